"""The Docker engine as a whole, apart from any one job: whether it answers, which engine it is,
and what a runner's earlier process left on it (swept by identity, never by name)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import docker
from docker.errors import NotFound

from runner.executors.docker import IDENTITY_LABEL, RUNNER_LABEL

log = logging.getLogger(__name__)


def sweep_orphans(identity: str, base_url: str | None = None, *, legacy_names: Sequence[str] = ()) -> bool:
    """Remove the containers and networks labelled with ``identity`` (the runner's): left by a
    previous process of this runner killed before its teardown ran. Call it before the runner
    registers, and never while a process of the runner runs jobs. Never raises: says whether
    nothing that carries the identity is left, as the engine lists it once the sweep is over
    (False when the engine does not answer, or something could not be removed). Only then may
    the runner tell the server that the previous process's jobs run no more.

    Containers of older versions carry the runner's name and no identity. They are never removed
    here: a name does not say which install made them (two installs may share it, and an upgraded
    one must not remove the running builds of one that is not yet). Those labelled with one of
    ``legacy_names`` are counted and the log says how to remove them by hand."""
    removed = 0
    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
    except Exception as exc:
        log.warning("orphan sweep skipped: %s", exc)
        return False
    filters = {"label": [f"{IDENTITY_LABEL}={identity}"]}
    try:
        for container in client.api.containers(all=True, filters=filters):
            try:
                client.api.remove_container(container["Id"], force=True, v=True)
                removed += 1
            except NotFound:
                pass
            except Exception as exc:
                log.warning("could not remove orphan container %s: %s", container["Id"][:12], exc)
        for network in client.api.networks(filters=filters):
            try:
                client.api.remove_network(network["Id"])
            except NotFound:
                pass
            except Exception as exc:
                log.warning("could not remove orphan network %s: %s", network.get("Name"), exc)
        left = [c["Id"][:12] for c in client.api.containers(all=True, filters=filters)]
        left += [n.get("Name", n["Id"][:12]) for n in client.api.networks(filters=filters)]
        for name in legacy_names:
            _mention_legacy_containers(client, name)
    except Exception as exc:
        log.warning("orphan sweep failed: %s", exc)
        return False
    finally:
        client.close()
    if removed:
        log.warning(
            "removed %d container(s) left by an earlier process of this runner (%s)", removed, identity
        )
    if left:
        log.error("orphan sweep incomplete: still there, labelled %s=%s: %s", IDENTITY_LABEL, identity, left)
    return not left


def _mention_legacy_containers(client: docker.DockerClient, runner_name: str) -> None:
    named = client.api.containers(all=True, filters={"label": [f"{RUNNER_LABEL}={runner_name}"]})
    legacy = [c["Id"][:12] for c in named if IDENTITY_LABEL not in (c.get("Labels") or {})]
    if legacy:
        log.warning(
            "%d container(s) labelled %s=%s by an older Greenlight carry no runner identity and are left "
            "alone (another install may share the name); if they are this runner's: docker rm -f %s",
            len(legacy), RUNNER_LABEL, runner_name, " ".join(legacy),
        )  # fmt: skip


ENGINE_CHECK_SECONDS = 5


def _checking_client(base_url: str | None) -> docker.DockerClient:
    """A client for a quick question to the engine: it gives up after ENGINE_CHECK_SECONDS."""
    if base_url:
        return docker.DockerClient(base_url=base_url, timeout=ENGINE_CHECK_SECONDS)
    return docker.from_env(timeout=ENGINE_CHECK_SECONDS)


def engine_id(base_url: str | None = None) -> str | None:
    """The engine's own id (it keeps it across its restarts; another machine's engine has
    another), or None when the engine does not answer. Never raises."""
    try:
        client = _checking_client(base_url)
        try:
            return str(client.info().get("ID") or "") or None
        finally:
            client.close()
    except Exception:
        return None


def engine_problem(base_url: str | None = None) -> str | None:
    """Why no step can run in a container now (the engine does not answer), or None. Never raises."""
    try:
        client = _checking_client(base_url)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [""])[0]
        return f"the Docker engine does not answer: {type(error).__name__}: {first_line}"[:500]
    return None
