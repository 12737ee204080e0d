"""A local HTTP server that answers like GitHub's REST API for what Greenlight uses: commit
statuses, a hook's deliveries and redelivery attempts, and GET /user (with the token's scopes).
It runs in a thread on a free port, records every request, and has knobs for the failures GitHub
really produces (5xx, primary and secondary rate limits, 422 on a long description, 401 on a bad token).

To add an endpoint family (deployments, …), register a handler:
``fake.route("POST", r"/repos/(?P<repo>[^/]+/[^/]+)/deployments", handler)`` where
``handler(request, **groups)`` returns a ``Reply``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

DOCS = "https://docs.github.com/rest"
TOKEN = "ghp_fake_token_for_tests"
STATUS_STATES = {"pending", "success", "failure", "error"}


@dataclass
class Request:
    method: str
    path: str  # without the prefix (e.g. /api/v3 for GitHub Enterprise)
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """A reply given instead of the real one, to the next ``times`` requests that match."""

    reply: Reply
    times: int = 1
    method: str | None = None
    path_contains: str | None = None

    def matches(self, request: Request) -> bool:
        return (self.method is None or self.method == request.method) and (
            self.path_contains is None or self.path_contains in request.path
        )


def server_error(status: int = 502) -> Reply:
    return Reply(status, {"message": "Server Error"})


def rate_limited(reset_at: dt.datetime) -> Reply:
    """GitHub's primary rate limit: 403, remaining 0, reset as epoch seconds."""
    return Reply(
        403,
        {"message": "API rate limit exceeded for user ID 1.", "documentation_url": DOCS},
        {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(reset_at.timestamp())),
            "X-RateLimit-Resource": "core",
        },
    )


def retry_after(seconds: int, status: int = 429) -> Reply:
    """A secondary rate limit: 429 (or 403) with Retry-After."""
    return Reply(
        status,
        {"message": "You have exceeded a secondary rate limit.", "documentation_url": DOCS},
        {"Retry-After": str(seconds)},
    )


Handler = Callable[..., Reply]


class FakeGitHub:
    def __init__(self, token: str = TOKEN, prefix: str = "") -> None:
        self.token = token
        self.prefix = prefix.rstrip("/")
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        # (OWNER/NAME, sha) -> statuses created, oldest first
        self.statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # (OWNER/NAME, hook id) -> deliveries, newest first (as GitHub lists them)
        self.deliveries: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.redelivery_attempts: list[tuple[str, str, int]] = []
        # Deployments created (with their statuses, oldest first under "statuses").
        self.deployments: list[dict[str, Any]] = []
        # The status code a redelivery GitHub makes gets (Greenlight is assumed back up).
        self.redelivery_status_code = 202
        self.max_page_size = 100
        # What GET /user says in X-OAuth-Scopes (a classic token); None: no header (fine-grained).
        self.scopes: str | None = "repo, admin:repo_hook"
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        repo = r"(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)"
        self.route("POST", rf"/repos/{repo}/statuses/(?P<sha>[0-9a-fA-F]+)", self._create_status)
        self.route("GET", rf"/repos/{repo}/hooks/(?P<hook>\d+)/deliveries", self._list_deliveries)
        attempts = rf"/repos/{repo}/hooks/(?P<hook>\d+)/deliveries/(?P<delivery>\d+)/attempts"
        self.route("POST", attempts, self._redeliver)
        self.route("POST", rf"/repos/{repo}/deployments", self._create_deployment)
        self.route(
            "POST", rf"/repos/{repo}/deployments/(?P<deployment>\d+)/statuses", self._deployment_status
        )
        self.route("GET", "/user", self._user)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-github", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.prefix}"

    def start(self) -> FakeGitHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- knobs -------------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def fail_next(
        self, reply: Reply, times: int = 1, *, method: str | None = None, path_contains: str | None = None
    ) -> None:
        with self._lock:
            self.faults.append(Fault(reply, times, method, path_contains))

    def add_delivery(
        self,
        repo: str,
        hook_id: str,
        *,
        guid: str,
        status_code: int,
        delivered_at: dt.datetime,
        event: str = "push",
        redelivery: bool = False,
    ) -> int:
        delivery_id = next(self._ids) + 10_000
        item = {
            "id": delivery_id,
            "guid": guid,
            "delivered_at": delivered_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "redelivery": redelivery,
            "duration": 0.1,
            "status": "OK" if 200 <= status_code < 300 else f"Invalid HTTP Response: {status_code}",
            "status_code": status_code,
            "event": event,
            "action": None,
            "installation_id": None,
            "repository_id": 1,
        }
        with self._lock:
            listed = self.deliveries.setdefault((repo, hook_id), [])
            listed.append(item)
            listed.sort(key=lambda d: (d["delivered_at"], d["id"]), reverse=True)
        return delivery_id

    # -- what was asked ----------------------------------------------------------------------

    def requests_to(self, method: str, path_contains: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == method and path_contains in r.path]

    def latest_status(self, repo: str, sha: str, context: str) -> dict[str, Any] | None:
        found = [s for s in self.statuses.get((repo, sha), []) if s["context"] == context]
        return found[-1] if found else None

    # -- endpoints ---------------------------------------------------------------------------

    def _create_status(self, request: Request, repo: str, sha: str) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        state, description = body.get("state"), body.get("description")
        if state not in STATUS_STATES:
            return _invalid("state", "invalid", f"state is not included in the list ({state!r})")
        if isinstance(description, str) and len(description) > 140:
            return _invalid("description", "custom", "description is too long (maximum is 140 characters)")
        status = {
            "id": next(self._ids),
            "state": state,
            "description": description,
            "target_url": body.get("target_url"),
            "context": body.get("context") or "default",
            "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        with self._lock:
            self.statuses.setdefault((repo, sha), []).append(status)
        return Reply(201, status)

    def _create_deployment(self, request: Request, repo: str) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if not isinstance(body.get("ref"), str) or not body["ref"]:
            return _invalid("ref", "missing_field", "ref is required")
        if body.get("auto_merge", True) is not False or body.get("required_contexts") is None:
            # What GitHub does with the defaults: merges the default branch in, or checks contexts.
            return Reply(
                409, {"message": "Conflict merging main into the deployment ref", "documentation_url": DOCS}
            )
        deployment = {
            "id": next(self._ids),
            "repo": repo,
            "ref": body["ref"],
            "sha": body["ref"],
            "environment": body.get("environment") or "production",
            "payload": body.get("payload"),
            "statuses": [],
        }
        with self._lock:
            self.deployments.append(deployment)
        return Reply(201, {k: v for k, v in deployment.items() if k != "statuses"})

    def _deployment_status(self, request: Request, repo: str, deployment: str) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        found = [d for d in self.deployments if d["id"] == int(deployment) and d["repo"] == repo]
        if not found:
            return Reply(404, {"message": "Not Found", "documentation_url": DOCS})
        states = {"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}
        if body.get("state") not in states:
            return _invalid("state", "invalid", f"state is not included in the list ({body.get('state')!r})")
        status = {"id": next(self._ids), **body}
        with self._lock:
            found[0]["statuses"].append(status)
        return Reply(201, status)

    def _list_deliveries(self, request: Request, repo: str, hook: str) -> Reply:
        with self._lock:
            listed = list(self.deliveries.get((repo, hook), []))
        if (repo, hook) not in self.deliveries:
            return Reply(404, {"message": "Not Found", "documentation_url": DOCS})
        size = min(int(request.query.get("per_page", "30")), self.max_page_size)
        start = int(request.query.get("cursor", "v1_0").removeprefix("v1_"))
        page = listed[start : start + size]
        headers = {}
        if start + size < len(listed):
            query = urlencode({"per_page": size, "cursor": f"v1_{start + size}"})
            headers["Link"] = f'<https://api.github.com{request.path}?{query}>; rel="next"'
        return Reply(200, page, headers)

    def _redeliver(self, request: Request, repo: str, hook: str, delivery: str) -> Reply:
        with self._lock:
            original = next(
                (d for d in self.deliveries.get((repo, hook), []) if d["id"] == int(delivery)), None
            )
        if original is None:
            return Reply(404, {"message": "Not Found", "documentation_url": DOCS})
        self.redelivery_attempts.append((repo, hook, int(delivery)))
        self.add_delivery(
            repo,
            hook,
            guid=original["guid"],
            status_code=self.redelivery_status_code,
            delivered_at=dt.datetime.now(dt.UTC),
            event=original["event"],
            redelivery=True,
        )
        return Reply(202, {})

    def _user(self, _request: Request) -> Reply:
        headers = {} if self.scopes is None else {"X-OAuth-Scopes": self.scopes}
        return Reply(200, {"login": "greenlight-bot", "id": 1}, headers)

    # -- plumbing ----------------------------------------------------------------------------

    def _dispatch(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            fault = next((f for f in self.faults if f.matches(request)), None)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"message": "Bad credentials", "documentation_url": DOCS})
        if not request.headers.get("user-agent"):
            return Reply(403, {"message": "Request forbidden by administrative rules."})
        if fault is not None:
            return fault.reply
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                return handler(request, **match.groupdict())
        return Reply(404, {"message": "Not Found", "documentation_url": DOCS})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                split = urlsplit(self.path)
                path = split.path
                if fake.prefix:
                    if not path.startswith(fake.prefix + "/"):
                        self._reply(Reply(404, {"message": "Not Found"}))
                        return
                    path = path[len(fake.prefix) :]
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    self._reply(Reply(400, {"message": "Problems parsing JSON"}))
                    return
                request = Request(
                    self.command,
                    path,
                    {k: v[-1] for k, v in parse_qs(split.query).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                self._reply(fake._dispatch(request))

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

            def _reply(self, reply: Reply) -> None:
                data = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        return _Handler


def _invalid(field_name: str, code: str, message: str) -> Reply:
    return Reply(
        422,
        {
            "message": "Validation Failed",
            "errors": [{"resource": "Status", "code": code, "field": field_name, "message": message}],
            "documentation_url": DOCS,
        },
    )


def running_fake(**kwargs: Any) -> Iterator[FakeGitHub]:
    """For fixtures: ``yield from running_fake()``."""
    fake = FakeGitHub(**kwargs).start()
    try:
        yield fake
    finally:
        fake.stop()
