"""Widgets: each renders one kind of snapshot and never does I/O."""
