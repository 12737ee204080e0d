"""The private PostgreSQL and Redis `greenlight up` runs in its data directory, and what it keeps
there (secrets, a lock), so that one machine runs the same code on the same servers as production."""
