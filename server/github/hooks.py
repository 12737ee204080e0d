"""Repository webhooks on GitHub: recent deliveries of a hook, and asking for a redelivery."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from contract.names import is_full_name
from server.github.client import GitHubClient
from server.models.base import moment_from_iso

PAGE_SIZE = 100
MAX_PAGES = 20


@dataclass(frozen=True)
class HookDelivery:
    """One attempt GitHub made to deliver an event (a redelivery is another attempt, same guid)."""

    id: int
    guid: str
    delivered_at: dt.datetime
    status_code: int  # 0 when GitHub got no HTTP answer at all (timeout, refused)
    event: str
    redelivery: bool

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300


def hook_path(full_name: str, hook_id: str) -> str:
    if not is_full_name(full_name) or not hook_id.isdigit():
        raise ValueError(f"refusing hook {hook_id!r} of {full_name!r}")
    return f"/repos/{quote(full_name, safe='/')}/hooks/{hook_id}"


def recent_deliveries(
    client: GitHubClient, full_name: str, hook_id: str, since: dt.datetime
) -> Iterator[HookDelivery]:
    """GET …/hooks/{id}/deliveries, newest first, page by page until older than ``since``.

    The next page is asked for by its cursor only: a URL from a response is never followed
    with our token."""
    path = f"{hook_path(full_name, hook_id)}/deliveries"
    params: dict[str, Any] = {"per_page": PAGE_SIZE}
    for _ in range(MAX_PAGES):
        response = client.request("GET", path, params=params)
        body = response.json()
        if not isinstance(body, list):
            return
        for item in body:
            delivery = _parse_delivery(item)
            if delivery is None:
                continue
            if delivery.delivered_at < since:
                return
            yield delivery
        cursor = _next_cursor(response.links.get("next", {}).get("url"))
        if not body or cursor is None:
            return
        params = {"per_page": PAGE_SIZE, "cursor": cursor}


def request_redelivery(client: GitHubClient, full_name: str, hook_id: str, delivery_id: int) -> None:
    """POST …/hooks/{id}/deliveries/{delivery_id}/attempts (GitHub answers 202)."""
    client.request("POST", f"{hook_path(full_name, hook_id)}/deliveries/{int(delivery_id)}/attempts")


def _parse_delivery(item: object) -> HookDelivery | None:
    if not isinstance(item, dict):
        return None
    try:
        return HookDelivery(
            id=int(item["id"]),
            guid=str(item["guid"])[:64],
            delivered_at=moment_from_iso(str(item["delivered_at"])),
            status_code=int(item.get("status_code") or 0),
            event=str(item.get("event") or "")[:64],
            redelivery=bool(item.get("redelivery")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _next_cursor(url: str | None) -> str | None:
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get("cursor")
    return values[0] if values else None
