"""Heterogeneity-aware scheduling: placement of workloads on the fleet (filter, score, select,
explained) and round-based allocation policies and their LPs."""
