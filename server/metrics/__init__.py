"""Prometheus metrics: what happened (counters and histograms, observed where it happens) and
what is (builds, jobs, queue and runners, read from the database when scraped)."""
