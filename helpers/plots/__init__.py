"""Plotting functions, one submodule per area of the course (the only place that imports matplotlib)."""
