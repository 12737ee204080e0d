"""What every outbox of Greenlight shares (commit statuses, GitHub deployments, notifications)."""
