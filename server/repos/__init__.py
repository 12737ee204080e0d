"""Repositories registered with Greenlight."""
