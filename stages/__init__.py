"""DVC stage entry points (``python -m stages.<name>``): arguments and params in, pipeline calls, outputs out."""
