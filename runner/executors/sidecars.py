"""A job's service containers (``services:``): started on the job's network before its first
step, reachable by name, checked for readiness, and shown in the log when something fails.

Readiness is probed from *inside* each sidecar (``docker exec``), by the service's own name on
the job network: the runner's host may not be able to reach that network at all (a runner in a
container, a remote engine), and no helper image can be assumed present on an offline runner.
A TCP check therefore needs one of bash, python3 or nc in the service's image (the official
database and cache images have them); for other images, ``ready: {command: ...}`` says how.

Removal is not done here: every sidecar carries the job's labels, so the executor's teardown and
``sweep_orphans`` remove it with the step containers.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from docker import DockerClient
from docker.errors import APIError

from contract.spec import JobSpec, LogLine, ServiceSpec, StepOutcome
from runner.executors.base import CANCELLED, LineSink, StepResult

log = logging.getLogger(__name__)

SERVICE_LABEL = "greenlight.service"
PROBE_INTERVAL_SECONDS = 0.25
# A probe that has not answered within this long counts as "not ready yet" (and is left to die
# with its container): a wedged exec must not stall the readiness loop.
PROBE_BUDGET_SECONDS = 5.0
LOG_TAIL_LINES = 50
# Exit codes of a probe that can never succeed: the shell found no tool / no such command.
UNPROBEABLE = (126, 127)

# The host and port are the script's arguments ($1, $2), never spliced into its text.
TCP_PROBE = r"""
if command -v bash >/dev/null 2>&1; then exec bash -c 'exec 3<>"/dev/tcp/$1/$2"' probe "$1" "$2"; fi
for py in python3 python; do
  if command -v "$py" >/dev/null 2>&1; then
    exec "$py" -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)' "$1" "$2"
  fi
done
if command -v nc >/dev/null 2>&1; then exec nc -z -w 2 "$1" "$2"; fi
echo "no bash, python3 or nc in this image to probe a TCP port" >&2
exit 127
"""


@dataclass
class Sidecar:
    spec: ServiceSpec
    container_id: str
    started_at: float


class Sidecars:
    """The sidecars of one job. Used from the executor's thread only."""

    def __init__(
        self,
        client: DockerClient,
        job: JobSpec,
        network: str,
        labels: dict[str, str],
        ensure_image: Callable[[str], None],
    ) -> None:
        self.client = client
        self.job = job
        self.network = network
        self.labels = labels
        self.ensure_image = ensure_image
        self.running: list[Sidecar] = []

    def start(self, on_line: LineSink, cancel: threading.Event) -> StepResult | None:
        """Start every service, then wait until each is ready. ``None`` when all are; otherwise
        the result that ends the step (failed with the reason and the service's log, or cancelled).
        Raises ``ExecutorError`` for our side's failures (image missing, engine down)."""
        began = time.monotonic()
        for service in self.job.services:
            self.ensure_image(service.image)
        for service in self.job.services:
            if cancel.is_set():  # the job's stop began while images were pulled: start nothing more
                return StepResult(StepOutcome.cancelled, None, time.monotonic() - began, CANCELLED)
            _say(on_line, f"starting service {service.name} ({service.image})")
            self.running.append(Sidecar(service, self._create_and_start(service), time.monotonic()))
        for sidecar in self.running:
            problem = self._wait_until_ready(sidecar, on_line, cancel)
            if problem is None:
                continue
            duration = time.monotonic() - began
            if problem == CANCELLED:
                return StepResult(StepOutcome.cancelled, None, duration, CANCELLED)
            _say(on_line, problem)
            self._show_log(sidecar, on_line)
            return StepResult(StepOutcome.failed, None, duration, problem)
        return None

    def show_logs(self, on_line: LineSink) -> None:
        """The end of every sidecar's output, for a step that did not pass."""
        for sidecar in self.running:
            self._show_log(sidecar, on_line)

    def _create_and_start(self, service: ServiceSpec) -> str:
        api, limits = self.client.api, self.job.limits
        host_config = api.create_host_config(
            network_mode=self.network,
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,  # no swap, as for steps
            nano_cpus=int(limits.cpus * 1e9),
            pids_limit=limits.pids,
            privileged=False,
            security_opt=["no-new-privileges"],
        )
        # The alias is what makes `http://web:8080/` work from the step containers.
        endpoint = api.create_endpoint_config(aliases=[service.name])
        container = api.create_container(
            image=service.image,
            command=service.command,  # argv or None (the image's CMD); never a shell string
            environment=service.env,
            hostname=service.name,
            labels=self.labels | {SERVICE_LABEL: service.name},
            name=f"greenlight-job-{self.job.job_id}-service-{service.name}-{secrets.token_hex(4)}",
            host_config=host_config,
            networking_config=api.create_networking_config({self.network: endpoint}),
        )
        container_id = str(container["Id"])
        api.start(container_id)
        return container_id

    def _wait_until_ready(self, sidecar: Sidecar, on_line: LineSink, cancel: threading.Event) -> str | None:
        """``None`` once the service is ready, ``CANCELLED``, or why it will never be."""
        service, ready = sidecar.spec, sidecar.spec.ready
        what = ""
        if ready is not None:
            what = f" (tcp port {ready.tcp_port})" if ready.tcp_port else " (ready command)"
        deadline = sidecar.started_at + (ready.timeout_seconds if ready else 0)
        last_output = ""
        while True:
            if cancel.is_set():
                return CANCELLED
            state = self.client.api.inspect_container(sidecar.container_id)["State"]
            if state["Status"] in ("exited", "dead"):
                return f"service {service.name!r} exited with code {state['ExitCode']} before it was ready"
            if ready is None:  # nothing to check: running is all we can know
                _say(on_line, f"service {service.name} is running (no readiness check)")
                return None
            budget = max(0.5, min(PROBE_BUDGET_SECONDS, deadline - time.monotonic()))
            code, last_output = self._probe(sidecar, budget)
            if code == 0:
                waited = time.monotonic() - sidecar.started_at
                _say(on_line, f"service {service.name} is ready{what} after {waited:.1f}s")
                return None
            if code in UNPROBEABLE and self._exited(sidecar):
                continue  # it exited as the check started: the loop's top names its exit code
            if code in UNPROBEABLE:
                hint = "; use `ready: {command: ...}` instead" if ready.tcp_port else ""
                return f"service {service.name!r} cannot be checked{what}: {_last_line(last_output)}{hint}"
            if time.monotonic() >= deadline:
                detail = f" ({_last_line(last_output)})" if last_output.strip() else ""
                return (
                    f"service {service.name!r} did not become ready{what} "
                    f"within {ready.timeout_seconds}s{detail}"
                )
            cancel.wait(PROBE_INTERVAL_SECONDS)

    def _exited(self, sidecar: Sidecar) -> bool:
        return self.client.api.inspect_container(sidecar.container_id)["State"]["Status"] in (
            "exited",
            "dead",
        )

    def _probe(self, sidecar: Sidecar, budget: float) -> tuple[int | None, str]:
        """Run the readiness check once inside the sidecar: (exit code or None, its output)."""
        ready = sidecar.spec.ready
        assert ready is not None
        if ready.tcp_port is not None:
            argv = ["/bin/sh", "-c", TCP_PROBE, "probe", sidecar.spec.name, str(ready.tcp_port)]
        else:
            argv = ["/bin/sh", "-c", str(ready.command)]
        api = self.client.api
        try:
            exec_id = api.exec_create(sidecar.container_id, argv, stdout=True, stderr=True)["Id"]
        except APIError as exc:  # e.g. 409: the container stopped meanwhile; the loop sees it exit
            return None, str(exc)
        output: list[bytes | Exception] = []

        def run_check() -> None:
            try:
                output.append(api.exec_start(exec_id))
            except Exception as exc:  # reported as "not ready yet" with the reason
                output.append(exc)

        runner = threading.Thread(target=run_check, name="greenlight-probe", daemon=True)
        runner.start()
        runner.join(budget)
        if runner.is_alive() or not output:
            return None, f"the check did not answer within {budget:.0f}s"
        if isinstance(output[0], Exception):
            return None, f"the check could not run: {output[0]}"
        code = api.exec_inspect(exec_id).get("ExitCode")
        return code, output[0].decode("utf-8", errors="replace")

    def _show_log(self, sidecar: Sidecar, on_line: LineSink) -> None:
        name = sidecar.spec.name
        try:
            raw = self.client.api.logs(sidecar.container_id, stdout=True, stderr=True, tail=LOG_TAIL_LINES)
        except APIError as exc:
            _say(on_line, f"could not read the output of service {name}: {exc}")
            return
        lines = raw.decode("utf-8", errors="replace").splitlines()
        if not lines:
            _say(on_line, f"service {name} printed nothing")
            return
        _say(on_line, f"output of service {name} (last {LOG_TAIL_LINES} lines):")
        for text in lines:
            on_line(LogLine(at=time.time(), stream="system", text=f"{name} | {text}"))


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _say(on_line: LineSink, text: str) -> None:
    on_line(LogLine(at=time.time(), stream="system", text=f"greenlight: {text}"))
