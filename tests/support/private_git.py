"""Private git servers for tests: `git http-backend` behind HTTP basic auth, and a real `sshd`
that accepts one deploy key. Both serve the bare repositories under one directory."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support import services

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
SSHD = "/usr/sbin/sshd"


@dataclass
class PrivateHttpGit:
    """Serves ``root/<name>.git`` at ``url/<name>.git`` to requests with the right basic auth."""

    root: Path
    url: str
    username: str
    password: str
    # Every Authorization header the server was sent (None: sent without one).
    authorizations: list[str | None] = field(default_factory=list)
    # The command lines (as `ps` shows them) that held the password while a fetch was talking to
    # this server: a token in argv is readable by every user of the machine.
    argv_with_password: list[str] = field(default_factory=list)


@contextmanager
def http_git_server(root: Path, username: str, password: str) -> Iterator[PrivateHttpGit]:
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    server_state = PrivateHttpGit(root=root, url="", username=username, password=password)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _serve(self) -> None:
            authorization = self.headers.get("Authorization")
            server_state.authorizations.append(authorization)
            server_state.argv_with_password.extend(_command_lines_holding(password))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if authorization != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="private git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "REMOTE_USER": username,
                "REMOTE_ADDR": "127.0.0.1",
            }
            result = subprocess.run([HTTP_BACKEND], input=body, env=env, capture_output=True, check=False)
            head, _, payload = result.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class PrivateSshGit:
    port: int
    client_key: str  # the deploy key (OpenSSH private key text) the server accepts
    host_public_key: str

    def url(self, repository: Path) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{repository}"


def _keypair(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "greenlight-test", "-f", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip


@contextmanager
def ssh_git_server(directory: Path) -> Iterator[PrivateSshGit]:
    """A real sshd on 127.0.0.1 that lets in only the key it generates (as root, whose shell
    runs `git-upload-pack` for the fetch)."""
    if not (Path(SSHD).exists() and shutil.which("ssh-keygen")):
        services.unavailable("openssh-server is not installed (scripts/services.sh installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    _keypair(directory / "host_key")
    _keypair(directory / "client_key")
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    port = services.free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {directory / 'host_key'}\n"
        f"PidFile {directory / 'sshd.pid'}\nAuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\nAllowUsers root\n"
        "LogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = open(directory / "sshd.log", "wb")  # noqa: SIM115 (owned by the process)
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {(directory / 'sshd.log').read_text()}")
            time.sleep(0.05)
        yield PrivateSshGit(
            port=port,
            client_key=(directory / "client_key").read_text(),
            host_public_key=(directory / "host_key.pub").read_text(),
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _command_lines_holding(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes()
        except OSError:  # the process ended meanwhile
            continue
        if text.encode() in argv:
            found.append(argv.replace(b"\0", b" ").decode(errors="replace"))
    return found


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
