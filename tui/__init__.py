"""tunedeck's Textual app. Imported only by ``runner/commands/tui.py`` (lazily)."""
