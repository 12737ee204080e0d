"""Run each step of a job in its own Docker container, on a private network per job, with the
job's limits enforced by the engine (docs/configuration.md, "Limits"; docs/security.md)."""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.models.networks import Network

from contract.spec import JobSpec, LogLine, StepOutcome, StepSpec
from runner.executors.base import (
    CANCELLED,
    OUT_OF_MEMORY,
    ExecutorError,
    LineSink,
    StepResult,
    must_stop,
)
from runner.executors.lines import CountingSink, LineSplitter, join_readers
from runner.executors.sidecars import Sidecars
from runner.images import RunnerImages
from runner.masking import SecretMasker

log = logging.getLogger(__name__)

PULL_POLICIES = ("never", "if-not-present", "always")
JOB_LABEL = "greenlight.job"
# The runner's name, for people reading `docker ps`; no sweep goes by it (two installs on one
# engine may share a name). What a runner removes is decided by its identity alone.
RUNNER_LABEL = "greenlight.runner"
IDENTITY_LABEL = "greenlight.runner.identity"
WORKSPACE = "/workspace"
POLL_SECONDS = 0.2
# Bounded waits on the engine once a step is over, so a wedged daemon cannot hang the runner.
EXIT_GRACE_SECONDS = 10.0
READER_GRACE_SECONDS = 5.0

# Everything the engine or its transport can throw at us; all of it is "our side's" failure.
EngineErrors = (DockerException, requests.RequestException)


class DockerExecutor:
    """One instance per job: ``setup`` → ``run_step``… → ``teardown`` (see ``base``).

    The job's services start within the first ``run_step``, before its script: their start and
    readiness show in that step's log, a service that never becomes ready fails that step, and a
    cancel or the job's timeout interrupts the wait like any step. When a step does not pass, the
    end of every service's output is added to its log. Teardown removes the services with the
    step containers (they carry the same labels).
    """

    name = "docker"

    def __init__(
        self,
        runner_name: str,
        *,
        identity: str,
        base_url: str | None = None,
        pull: str = "if-not-present",
        images: RunnerImages | None = None,
    ) -> None:
        """``identity``: the runner's (``runner.identity``), on everything created for a job.
        ``images``: the runner's record of images it pulled and its jobs need (disk hygiene
        removes only those it pulled, and never one a running job needs)."""
        if pull not in PULL_POLICIES:
            raise ValueError(f"pull must be one of {', '.join(PULL_POLICIES)}, not {pull!r}")
        if not identity:
            raise ValueError("a runner's executor needs its identity")
        self.runner_name = runner_name
        self.identity = identity
        self.pull = pull
        self.images = images
        try:
            self.client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        except EngineErrors as exc:
            raise ExecutorError(f"the Docker engine is not reachable: {exc}") from exc
        self.job: JobSpec | None = None
        self.workspace: Path | None = None
        self.network: Network | None = None
        self.sidecars: Sidecars | None = None
        self._ready_images: set[str] = set()
        self._masker = SecretMasker(())
        self._mounts: dict[str, Path] = {}

    @property
    def labels(self) -> dict[str, str]:
        """Labels for everything created for this job, so teardown and orphan sweeps find it."""
        if self.job is None:
            raise ExecutorError("the executor has no job: call setup() first")
        return {
            JOB_LABEL: str(self.job.job_id),
            RUNNER_LABEL: self.runner_name,
            IDENTITY_LABEL: self.identity,
        }

    def mount(self, mounts: dict[str, Path]) -> None:
        """Bind each host directory (a cache's, in the runner directory) at its path in every
        step container; services never get them."""
        self._mounts = dict(mounts)

    def setup(self, job: JobSpec, workspace: Path) -> None:
        self.job = job
        self.workspace = workspace.resolve()
        self._masker = SecretMasker(job.mask_values())
        name = f"greenlight-job-{job.job_id}-{secrets.token_hex(4)}"
        try:
            self.network = self.client.networks.create(name, driver="bridge", labels=self.labels)
        except EngineErrors as exc:
            raise ExecutorError(f"could not create the job network {name}: {exc}") from exc

    def ensure_image(self, image: str) -> None:
        """Make ``image`` available locally according to the pull policy, or raise ExecutorError."""
        if image in self._ready_images:
            return
        if self.images is not None and self.job is not None:
            self.images.use(self.job.job_id, image)
        try:
            present = self._has_image(image)
        except EngineErrors as exc:
            raise ExecutorError(f'could not look up image "{image}" on this runner: {exc}') from exc
        if present and self.pull != "always":
            self._ready_images.add(image)
            return
        if not present and self.pull == "never":
            raise ExecutorError(f'image "{image}" is not on this runner and the pull policy is "never"')
        try:
            self.client.images.pull(image)
        except EngineErrors as exc:
            problem = "could not be pulled" if present else "is not on this runner and could not be pulled"
            raise ExecutorError(f'image "{image}" {problem}: {exc}') from exc
        if not present and self.images is not None:
            self.images.pulled(image)
        self._ready_images.add(image)

    def _has_image(self, image: str) -> bool:
        try:
            self.client.images.get(image)
        except ImageNotFound:
            return False
        return True

    def run_step(self, step: StepSpec, on_line: LineSink, cancel: threading.Event) -> StepResult:
        if self.job is None or self.workspace is None or self.network is None:
            raise ExecutorError("run_step called before setup")
        if cancel.is_set():
            return StepResult(StepOutcome.cancelled, None, 0.0, CANCELLED)
        if self.sidecars is None:
            self.sidecars = Sidecars(self.client, self.job, self.network.name, self.labels, self.ensure_image)
            try:
                failed = self.sidecars.start(on_line, cancel)
            except EngineErrors as exc:
                raise ExecutorError(f"Docker failed while starting the job's services: {exc}") from exc
            if failed is not None:
                return failed
        self.ensure_image(step.image)
        if cancel.is_set():  # the job's stop began while the image was pulled: start nothing
            return StepResult(StepOutcome.cancelled, None, 0.0, CANCELLED)
        container_id: str | None = None
        try:
            container_id = self._create(step)
            result = self._run(container_id, step, on_line, cancel)
        except EngineErrors as exc:
            raise ExecutorError(f"Docker failed while running step {step.name!r}: {exc}") from exc
        finally:
            if container_id is not None:
                self._remove_container(container_id)
        if result.outcome is StepOutcome.failed or result.outcome is StepOutcome.timed_out:
            self.sidecars.show_logs(on_line)
        return result

    def _create(self, step: StepSpec) -> str:
        assert self.job is not None and self.network is not None
        limits = self.job.limits
        container = self.client.containers.create(
            image=step.image,
            command=["/bin/sh", "-e", "-c", step.script],
            # A list of KEY=VALUE, never a shell string: values reach the process verbatim.
            environment=self.job.env | step.env | step.secret_env(),
            working_dir=WORKSPACE,
            volumes={
                str(self.workspace): {"bind": WORKSPACE, "mode": "rw"},
                **{str(host): {"bind": path, "mode": "rw"} for path, host in self._mounts.items()},
            },
            network=self.network.name,
            name=f"greenlight-job-{self.job.job_id}-step-{step.index}-{secrets.token_hex(4)}",
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,  # equal to the memory limit: no swap
            nano_cpus=int(limits.cpus * 1e9),
            pids_limit=limits.pids,
            privileged=False,
            security_opt=["no-new-privileges"],
            auto_remove=False,  # the exit state (code, OOMKilled) must outlive the process
            labels=self.labels,
            stdin_open=False,
            tty=False,
            # The runner's attach stream is the one reader of a step's output: an engine log
            # (json-file) would write all of it a second time, and a busy step would pay twice.
            log_config={"Type": "none", "Config": {}},
        )
        return str(container.id)

    def _run(self, cid: str, step: StepSpec, on_line: LineSink, cancel: threading.Event) -> StepResult:
        api = self.client.api
        # Attach before start: attaching to a container that has already exited blocks forever
        # (engine 20.10), and attaching late could miss the first lines of a fast step. Without an
        # engine log there is nothing printed before the attach to replay (``logs=False``).
        frames = api.attach(cid, stdout=True, stderr=True, stream=True, logs=False, demux=True)
        sink = CountingSink(on_line)
        reader = threading.Thread(
            target=_pump,
            args=(frames, sink, self._masker),
            name=f"greenlight-attach-{cid[:12]}",
            daemon=True,
        )
        reader.start()
        if cancel.is_set():
            # The job's stop began meanwhile: a cancelled step never starts its container (its
            # removal ends the attach stream and the reader with it).
            return StepResult(StepOutcome.cancelled, None, 0.0, CANCELLED)
        api.start(cid)
        started = time.monotonic()
        deadline = started + step.timeout_seconds
        outcome: StepOutcome | None = None
        reason: str | None = None
        while True:
            state = api.inspect_container(cid)["State"]
            if state["Status"] in ("exited", "dead"):
                break
            if stop := must_stop(step, cancel, deadline):
                outcome, reason = stop
                break
            # The attach stream ends when the container does, so waiting on it keeps fast steps fast.
            if reader.is_alive():
                reader.join(POLL_SECONDS)
            else:
                cancel.wait(POLL_SECONDS / 4)
        duration = time.monotonic() - started
        if outcome is not None:
            self._kill(cid)
        join_readers([reader], sink, READER_GRACE_SECONDS)
        if reader.is_alive():
            log.warning("step %s: output stream of container %s did not end", step.name, cid[:12])
        if outcome is not None:
            return StepResult(outcome, None, duration, reason)

        code = int(state["ExitCode"])
        # OOMKilled means *some* process of the container hit the limit (cgroup v1 event); if the
        # script survived that and exited 0, the step passed.
        if state.get("OOMKilled") and code != 0:
            assert self.job is not None
            mib = self.job.limits.memory_bytes // (1024 * 1024)
            return StepResult(StepOutcome.failed, code, duration, f"{OUT_OF_MEMORY} (limit {mib} MiB)")
        if code == 0:
            return StepResult(StepOutcome.passed, 0, duration)
        return StepResult(StepOutcome.failed, code, duration, f"exit code {code}")

    def _kill(self, cid: str) -> None:
        try:
            self.client.api.kill(cid)
        except EngineErrors as exc:
            log.debug("kill %s: %s (probably already exited)", cid[:12], exc)
        try:
            self.client.api.wait(cid, timeout=EXIT_GRACE_SECONDS)
        except EngineErrors as exc:
            log.warning("container %s did not stop after SIGKILL: %s", cid[:12], exc)

    def _remove_container(self, cid: str) -> None:
        try:
            self.client.api.remove_container(cid, force=True, v=True)
        except NotFound:
            pass
        except EngineErrors as exc:
            log.warning("could not remove container %s (teardown will retry): %s", cid[:12], exc)

    def teardown(self) -> bool:
        """Remove every container still labelled for this job, then the network. Never raises.
        Whether no container labelled for the job is left (listed again after the removal; False
        also when the engine cannot say): only then may the server hear that the job stopped.
        Called again, it tries again."""
        if self.job is None:
            return True
        if self.images is not None:
            self.images.release(self.job.job_id)
        filters = {"label": [f"{JOB_LABEL}={self.job.job_id}", f"{IDENTITY_LABEL}={self.identity}"]}
        try:
            # The low-level list: containers.list() inspects each hit, and the engine lists a
            # container being created a moment before it can inspect it (404 → whole sweep lost).
            for container in self.client.api.containers(all=True, filters=filters):
                self._remove_container(container["Id"])
            left = [c["Id"][:12] for c in self.client.api.containers(all=True, filters=filters)]
        except Exception as exc:
            log.warning("job %s: could not sweep its containers: %s", self.job.job_id, exc)
            left = ["(the engine did not list them)"]
        if left:
            log.error("job %s: its containers are still there after teardown: %s", self.job.job_id, left)
        self._remove_network()
        return not left

    def _remove_network(self) -> None:
        assert self.job is not None
        if self.network is None:
            return
        try:
            # Anything else still attached (say, a sidecar someone forgot to label) would make the
            # engine refuse to remove the network.
            self.network.reload()
            for cid in self.network.attrs.get("Containers") or {}:
                with contextlib.suppress(NotFound):
                    self.client.api.disconnect_container_from_network(cid, self.network.id, force=True)
            self.network.remove()
            self.network = None
        except NotFound:
            self.network = None
        except Exception as exc:
            log.warning("job %s: could not remove network %s: %s", self.job.job_id, self.network.name, exc)

    def close(self) -> None:
        """Release the engine connection (after teardown, when the executor is done for good)."""
        self.client.close()


def _pump(frames: Any, on_line: LineSink, masker: SecretMasker) -> None:
    # One splitter for both streams, fed in the order the engine interleaved their frames.
    splitter = LineSplitter(on_line, masker)
    try:
        for stdout_chunk, stderr_chunk in frames:
            if stdout_chunk:
                splitter.feed("stdout", stdout_chunk)
            if stderr_chunk:
                splitter.feed("stderr", stderr_chunk)
    except Exception as exc:  # the stream is best effort; the exit state still decides the outcome
        log.warning("output stream broke: %s", exc)
        on_line(LogLine(at=time.time(), stream="system", text=f"output stream interrupted: {exc}"))
    finally:
        splitter.close()
