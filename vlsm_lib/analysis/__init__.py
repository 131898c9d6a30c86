"""Statistics of gathered runs."""
