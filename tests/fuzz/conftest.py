"""Fuzzing profiles. The suite (and so CI) replays the same generated examples on every run, so
main stays green and a failure is reproducible; `GREENLIGHT_FUZZ=explore` draws new ones.
Loaded before the test modules build their `settings(...)`, which inherit from it."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("GREENLIGHT_FUZZ", "repeatable"))
