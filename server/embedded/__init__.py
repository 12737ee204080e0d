"""The embedded mode: what `greenlight up` runs in its data directory."""
