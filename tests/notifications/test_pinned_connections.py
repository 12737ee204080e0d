"""A request sent to a checked address (GREENLIGHT_NOTIFY_DENY_PRIVATE) opens its own connection:
a kept-alive connection to the same address, made for another host name, is never reused, since
over TLS it carries the certificate checked for that other name, not for this one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import server.notifications.channels as channels
from server.config import Settings
from server.notifications.channels import http_client, post


@pytest.fixture
def keep_alive_server() -> Iterator[tuple[int, list[tuple[str, int]]]]:
    """An HTTP/1.1 server that keeps connections open; records (Host, client port) per request."""
    seen: list[tuple[str, int]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            seen.append((self.headers["host"], self.client_address[1]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_two_host_names_at_one_checked_address_never_share_a_connection(
    settings: Settings, keep_alive_server: tuple[int, list[tuple[str, int]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, seen = keep_alive_server
    denying = settings.model_copy(update={"notify_deny_private": True})
    # Both names resolve to one address that passed the check (a shared front, a CDN).
    monkeypatch.setattr(channels, "public_address", lambda host, port: "127.0.0.1")
    with http_client(denying) as http:
        post(http, denying, f"http://a.example:{port}/a", b"{}", {})
        post(http, denying, f"http://b.example:{port}/b", b"{}", {})
    [(host_a, port_a), (host_b, port_b)] = seen
    assert (host_a, host_b) == (f"a.example:{port}", f"b.example:{port}")
    assert port_a != port_b, "the second host name's request went over the first one's connection"
