"""Is this deployment healthy: the checks behind ``/readyz`` and ``greenlight doctor``."""
