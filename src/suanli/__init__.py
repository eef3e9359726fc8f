"""suanli: one cloud over a mixed fleet of AI accelerators."""

__version__ = "0.1.0"
