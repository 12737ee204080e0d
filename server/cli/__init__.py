"""The `greenlight` command line."""
