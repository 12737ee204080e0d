"""Greenlight server: webhooks in, builds planned and queued, runners served, results shown."""

__version__ = "0.1.0"
