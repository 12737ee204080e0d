"""Builds: created from webhooks, planned into jobs, finished when their jobs are."""
