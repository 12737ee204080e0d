"""The test proxy forwards, refuses while cut, hangs while holding, and forwards again."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from tests.support.tcp_proxy import TcpProxy


def echo_server() -> int:
    server = socket.create_server(("127.0.0.1", 0))

    def echo(connection: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the proxy may reset it
            while data := connection.recv(1024):
                connection.sendall(data)

    def serve() -> None:
        while True:
            connection, _ = server.accept()
            threading.Thread(target=echo, args=(connection,), daemon=True).start()

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


def test_a_connection_being_made_while_the_proxy_is_cut_is_not_forwarded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cut lands between the accept and the upstream connection: that pair must not forward
    through the outage (a runner's heartbeat would keep reaching the server)."""
    with TcpProxy("127.0.0.1", echo_server()) as proxy:
        connect = socket.create_connection

        def cut_while_connecting(*args, **kwargs):  # type: ignore[no-untyped-def]
            upstream = connect(*args, **kwargs)
            proxy.cut()
            return upstream

        monkeypatch.setattr("tests.support.tcp_proxy.socket.create_connection", cut_while_connecting)
        with pytest.raises(OSError):
            ask(proxy.port)


def silent_server() -> int:
    """Accepts and reads, never answers: a server busy with a request when the network fails."""
    server = socket.create_server(("127.0.0.1", 0))

    def read(connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while connection.recv(1024):
                pass

    def serve() -> None:
        while True:
            connection, _ = server.accept()
            threading.Thread(target=read, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def test_a_cut_resets_a_connection_whose_request_is_waiting_for_its_answer() -> None:
    """Both of the pair's pumps are blocked reading when the cut comes: closing a socket another
    thread reads from sends nothing, so the client would wait out its whole read timeout as if
    the server were a black hole, not see the reset a cut promises."""
    with (
        TcpProxy("127.0.0.1", silent_server()) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock,
    ):
        sock.sendall(b"a request")
        while not proxy.connections:
            threading.Event().wait(0.01)
        threading.Event().wait(0.1)  # the request is forwarded; both pumps wait for data
        proxy.cut()
        with pytest.raises((ConnectionResetError, ConnectionAbortedError)):
            assert sock.recv(1024) == b"", "closed without a reset"
