"""Trace loaders and the round-based discrete-event simulator of a mixed fleet."""
