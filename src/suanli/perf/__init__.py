"""Performance models of accelerators: measured and predicted job throughputs."""
