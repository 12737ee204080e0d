"""Greenlight runner: a Celery worker that claims jobs from the server and runs them in containers."""

__version__ = "0.1.0"
