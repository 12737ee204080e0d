"""The job queue: Postgres rows are the queue; Celery messages only wake runners up."""
