"""Helpers shared by the test suite: real services (Postgres, Redis, Docker) and git repositories."""
