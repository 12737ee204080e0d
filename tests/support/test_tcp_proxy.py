"""The test proxy forwards, refuses while cut, hangs while holding, and forwards again."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.support.tcp_proxy import TcpProxy


def echo_server() -> int:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            connection, _ = server.accept()
            threading.Thread(
                target=lambda c=connection: [c.sendall(d) for d in iter(lambda: c.recv(1024), b"")],
                daemon=True,
            ).start()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def ask(port: int, timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"ping")
        return sock.recv(1024)


def test_the_proxy_forwards_refuses_holds_and_forwards_again() -> None:
    with TcpProxy("127.0.0.1", echo_server()) as proxy:
        assert ask(proxy.port) == b"ping"
        proxy.cut()
        with pytest.raises(OSError):  # reset at once
            ask(proxy.port)
        proxy.cut(hold=True)
        with pytest.raises(TimeoutError):
            ask(proxy.port, timeout=0.5)
        proxy.restore()
        assert ask(proxy.port) == b"ping"
