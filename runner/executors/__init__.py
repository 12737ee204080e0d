"""Executors run the steps of one job: in Docker containers, or (without Docker) as local processes."""
