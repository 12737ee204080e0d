"""A TCP proxy on 127.0.0.1 that a test can cut: to put a network fault between a runner and a
live server without touching either.

    with TcpProxy("127.0.0.1", server_port) as proxy:
        start_runner(server_url=proxy.url)
        proxy.cut()             # open connections are reset, new ones refused (reset at once)
        proxy.cut(hold=True)    # or: connections hang, as a frozen host or a black hole looks
        proxy.restore()         # forward again
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._mode = "forward"  # forward | refuse | hold
        self._open: set[socket.socket] = set()
        # Sockets a cut resets: their pumps must not pass the end on as a clean close (a FIN
        # reaching the client before the reset would read as the server closing, not a cut).
        self._dropped: set[socket.socket] = set()
        self._held: list[socket.socket] = []
        self._closed = False
        self.connections = 0  # accepted while forwarding
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, *, hold: bool = False) -> None:
        """Drop every open connection; until ``restore``, refuse new ones (reset as soon as
        accepted) or, with ``hold``, accept them and never answer."""
        with self._lock:
            self._mode = "hold" if hold else "refuse"
            sockets, self._open = self._open, set()
            self._dropped.update(sockets)
        for sock in sockets:
            _reset(sock)

    def restore(self) -> None:
        """Forward again; connections held meanwhile are reset (their requests were never sent)."""
        with self._lock:
            self._mode = "forward"
            held, self._held = self._held, []
        for sock in held:
            _reset(sock)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = [*self._open, *self._held]
            self._open, self._held = set(), []
            self._dropped.update(sockets)
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in sockets:
            _reset(sock)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                mode = "closed" if self._closed else self._mode
                if mode == "hold":
                    self._held.append(client)
                    continue
            if mode != "forward":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                # A cut while the upstream connection was being made would miss this pair and
                # leave it forwarding through the outage: look at the mode again.
                if self._mode != "forward" or self._closed:
                    _reset(client)
                    _reset(upstream)
                    continue
                self._open.update((client, upstream))
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            dropped = sink in self._dropped
        if not dropped:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
        with self._lock:
            done = source in self._open and sink not in self._open
            self._open.discard(source)
        if done:
            source.close()
            sink.close()


def _reset(sock: socket.socket) -> None:
    """Close with a reset (linger 0), as a refused or broken connection looks to the client.

    A pump thread may be blocked reading this socket: closing it then sends nothing until that
    read returns, and it never would. Shutting the reading side first wakes it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()
