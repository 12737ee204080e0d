"""What a runner token allows: the labels its runners may register for and take jobs of.

Decided on the server (``greenlight token create --labels``, ``greenlight token labels``), never
by the runner: a runner asking for more than its token allows is refused at registration, and
every claim is limited to what the token allows at that moment, so narrowing a token narrows
its runners at their next claim. A deploy job carries its environment's secrets in its claim,
so only runners whose token allows the deploy job's labels ever see them.
"""

from __future__ import annotations

import re

from contract.spec import ALL_LABELS

# A runner token created without --labels serves the label build jobs get by default (and runners
# register with by default), not deploy jobs (label "deploy"): deploying is given explicitly, and
# so is "*".
DEFAULT_RUNNER_TOKEN_LABELS = ["docker"]
_LABEL = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


class InvalidLabel(ValueError):
    pass


def parse_labels(text: str) -> list[str]:
    """Comma-separated labels, as a token is given them: each a label a pipeline can name, or "*"."""
    labels = sorted({label.strip() for label in text.split(",") if label.strip()})
    if not labels:
        raise InvalidLabel("give at least one label (or '*' for every label)")
    for label in labels:
        if label != ALL_LABELS and not _LABEL.fullmatch(label):
            raise InvalidLabel(f"{label!r} is not a label (letters, digits, _ . : - ; or '*' alone)")
    return labels


def labels_not_allowed(asked: list[str], token_labels: list[str] | None) -> list[str]:
    """Those of ``asked`` the token does not allow ("*" included, unless the token has "*")."""
    allowed = token_labels or []
    if ALL_LABELS in allowed:
        return []
    return sorted(set(asked) - set(allowed))


def labels_served(runner_labels: list[str], token_labels: list[str] | None) -> list[str]:
    """The labels a runner may take jobs of now: those it registered for, within those its token
    allows now (it registered within them, but the token may have been narrowed since)."""
    allowed = token_labels or []
    if ALL_LABELS in allowed:
        return list(runner_labels)
    if ALL_LABELS in runner_labels:
        return list(allowed)
    return sorted(set(runner_labels) & set(allowed))
