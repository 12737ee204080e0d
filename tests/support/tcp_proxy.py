"""A TCP proxy a test controls, between one runner and the server: it forwards bytes both ways
until the test cuts it, then the runner is cut off while the server stays up for everyone else.

Two ways to be cut off, as networks fail:
- ``refuse``: every connection is reset at once (a firewall that rejects, a crashed load balancer);
- ``blackhole``: connections are accepted and nothing ever comes back (a hung network).

``cut_on(marker)`` arms a cut for the first request whose bytes hold ``marker``: that request never
reaches the server. Cutting on ``/api/runner/jobs/`` cuts a runner off right after a claim, before
anything about the claimed job (step start, heartbeat, log) has reached the server.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

REFUSE = "refuse"
BLACKHOLE = "blackhole"


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._mode: str | None = None  # None: forwarding
        self._marker: bytes | None = None
        self._marker_mode = REFUSE
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self.cut_at: float | None = None  # time.monotonic() of the last cut
        threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        with self._lock:
            return self._mode is not None

    def cut(self, mode: str = REFUSE) -> None:
        """Cut off whoever talks through the proxy, now: open connections too."""
        if mode not in (REFUSE, BLACKHOLE):
            raise ValueError(f"mode must be {REFUSE} or {BLACKHOLE}, not {mode!r}")
        with self._lock:
            self._mode, self._marker, self.cut_at = mode, None, time.monotonic()
            sockets = list(self._sockets) if mode == REFUSE else []
        for sock in sockets:
            _reset(sock)

    def cut_on(self, marker: bytes, mode: str = REFUSE) -> None:
        """Cut off at the first request holding ``marker``, which is not forwarded."""
        with self._lock:
            self._marker, self._marker_mode = marker, mode

    def heal(self) -> None:
        """Forward again. Connections opened while cut stay dead (clients open new ones)."""
        with self._lock:
            self._mode, self._marker = None, None
            held = list(self._sockets)
        for sock in held:
            _reset(sock)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.heal()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
                self._sockets.add(client)
            if mode == REFUSE:
                _reset(client)
                continue
            if mode == BLACKHOLE:
                continue  # held open and never read: requests hang until the client gives up
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._sockets.add(upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                with self._lock:
                    if from_client and self._marker is not None and self._marker in data:
                        self._mode, self._marker, self.cut_at = self._marker_mode, None, time.monotonic()
                    mode = self._mode
                if mode == REFUSE:
                    break
                if mode == BLACKHOLE:
                    continue  # swallowed, both ways
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            mode = self._mode
            if mode != BLACKHOLE:
                self._sockets.discard(source)
                self._sockets.discard(sink)
        if mode != BLACKHOLE:
            _reset(source)
            _reset(sink)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0): the peer sees 'connection reset', not a clean end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
