"""Alembic environment and the schema history (one history for Postgres and SQLite)."""
