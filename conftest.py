"""Top-level pytest configuration: load the harness plugin (markers, grids, global state)."""

pytest_plugins = ("harness.pytest_plugin",)
