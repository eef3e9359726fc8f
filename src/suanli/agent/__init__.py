"""Node agent: runs on each machine of the fleet."""
