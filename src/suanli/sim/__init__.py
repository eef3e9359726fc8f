"""Trace loaders, the round-based simulator of a mixed fleet (``rounds``, after Gavel) and
the node-level event simulator that drives the placement scheduler (``cluster``), with its
fleets (``fleetfile``), workload sources (``sources``) and reports (``report``)."""
