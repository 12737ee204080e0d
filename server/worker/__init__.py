"""Server-side background work on Celery: planning builds and reconciling the queue."""
