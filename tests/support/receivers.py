"""Real receivers for notifications, on local ports: an HTTP server that records what is posted
to it and answers as told (fail a few times, redirect), and an SMTP server (aiosmtpd) that keeps
the messages it is handed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    """Answers each POST with the next of ``answers`` (status, extra headers), then 200 for good."""

    url: str
    requests: list[Received] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    @property
    def delivered(self) -> list[Received]:
        """The requests it answered with a success."""
        return [request for request in self.requests if request.headers.get("x-answered") == "2xx"]


@contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    lock = threading.Lock()
    receiver = HttpReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                status, extra = receiver.answers.pop(0) if receiver.answers else (200, {})
                headers = {key.lower(): value for key, value in self.headers.items()}
                headers["x-answered"] = "2xx" if status < 300 else str(status)
                receiver.requests.append(Received(self.path, headers, body))
            self.send_response(status)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[tuple[list[str], Message]] = field(default_factory=list)  # (envelope recipients, message)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(content, policy=default)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """An SMTP server without STARTTLS or auth, as a local relay would be."""
    mailbox = Mailbox("127.0.0.1", free_port())
    # The controller checks it is up by connecting to its port, so it needs one named up front.
    controller = Controller(mailbox, hostname=mailbox.host, port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()
