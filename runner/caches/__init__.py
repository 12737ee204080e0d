"""Dependency caches on the runner: keys from the workspace, a store per host, restore and save."""
