"""Interactive widgets, one submodule per area (the only place that imports ipywidgets)."""
