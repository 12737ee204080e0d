"""Which environments are production, by name: GitHub is told so with each deployment, and the
pages ask a person to type the environment's name before they promote to it, roll it back or
approve a deployment to it."""

from __future__ import annotations

# The promotion order ranks these last (server/deploys/order.py): one list for both.
PRODUCTION_NAMES = ("prod", "production", "live")


def is_production(environment: str) -> bool:
    return environment.lower() in PRODUCTION_NAMES
