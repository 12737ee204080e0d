"""Continuous delivery: environments, deployments (run as jobs of deploy builds), promote, rollback."""
