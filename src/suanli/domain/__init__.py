"""Plain records and pure rules of the fleet; no I/O."""
