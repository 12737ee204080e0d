"""Scheduled builds: schedules kept on the server, fired exactly once per due time."""
