"""A build's artifacts as one zip (``GET /api/builds/{id}/artifacts.zip``): every live file of the
build under its job's folder, streamed from the blob store, read under the repository's rule as
single files are; expired files are left out, and the zip's member names are always safe."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import secrets
import unicodedata
import zipfile
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.artifacts.archive import JobOfFiles, Member, job_folders, zipped
from server.blobs.store import BlobStore, store_of
from server.config import Settings
from server.models import Artifact, Build, Job
from server.models.base import utcnow
from tests import factories
from tests.support.app_client import bearer

pytestmark = pytest.mark.integration


def keep(
    session: Session, store: BlobStore, job: Job, path: str, data: bytes, *, expired: bool = False
) -> Artifact:
    key = f"artifacts/{job.build_id}/{secrets.token_urlsafe(18)}"
    source = store.spool / secrets.token_hex(8)
    source.write_bytes(data)
    store.put(key, source)
    artifact = Artifact(
        build_id=job.build_id, job_id=job.id, path=path, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), blob_key=key,
        expires_at=utcnow() - dt.timedelta(days=1) if expired else None,
    )  # fmt: skip
    session.add(artifact)
    session.flush()
    return artifact


def two_jobs(session: Session, *, public: bool = True) -> tuple[Build, Job, Job]:
    build = factories.build(session, factories.repository(session, public=public))
    first, second = factories.job(session, build), factories.job(session, build)
    first.name, second.name = "build (py3.12)", "../../etc"
    session.flush()
    return build, first, second


def test_the_zip_holds_each_live_file_under_its_jobs_folder(
    client: TestClient, session: Session, settings: Settings
) -> None:
    store = store_of(settings)
    build, first, second = two_jobs(session)
    keep(session, store, first, "dist/app.whl", b"wheel" * 100_000)
    keep(session, store, first, "report.xml", b"<testsuite/>")
    keep(session, store, second, "out/a.txt", b"a")
    keep(session, store, second, "old.txt", b"gone", expired=True)
    session.commit()

    reply = client.get(f"/api/builds/{build.id}/artifacts.zip")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/zip"
    assert f'filename="build-{build.number}-artifacts.zip"' in reply.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(reply.content))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names == ["build (py3.12)/dist/app.whl", "build (py3.12)/report.xml", ".._.._etc/out/a.txt"]
    assert archive.read("build (py3.12)/dist/app.whl") == b"wheel" * 100_000
    # A package is compressed already: stored as it is; a report is deflated.
    assert archive.getinfo("build (py3.12)/dist/app.whl").compress_type == zipfile.ZIP_STORED
    assert archive.getinfo("build (py3.12)/report.xml").compress_type == zipfile.ZIP_DEFLATED
    for name in names:  # nothing a careless unzip would write outside its folder
        assert not name.startswith("/") and ".." not in name.split("/"), name


def test_job_folders_are_safe_names_and_never_shared() -> None:
    jobs = [
        JobOfFiles(1, "a/b", 1, True),
        JobOfFiles(2, "a_b", 1, True),  # made safe, "a/b" is the same name: kept apart
        JobOfFiles(3, 'deploy: "prod"?', 1, True),  # names Windows would refuse
        JobOfFiles(4, "..", 1, True),
        JobOfFiles(5, "test\u202egpj.exe", 2, False),  # a bidi override, an earlier attempt
    ]
    assert job_folders(jobs) == {
        1: "a_b",
        2: "a_b (job 2)",
        3: "deploy_ _prod__",
        4: "_.._",
        5: "test_gpj.exe (attempt 2)",
    }


def test_a_folder_renamed_apart_is_checked_again() -> None:
    """A matrix value can spell the name another job's folder was renamed to."""
    jobs = [
        JobOfFiles(2, "a_b", 1, True),
        JobOfFiles(5, "a_b (job 12)", 1, True),
        JobOfFiles(12, "a/b", 1, True),
        JobOfFiles(13, "A_B", 1, True),  # one folder on Windows and macOS, whose disks ignore case
    ]
    folders = job_folders(jobs)
    assert len({folder.casefold() for folder in folders.values()}) == len(jobs), folders
    assert folders[2] == "a_b" and folders[5] == "a_b (job 12)"


# What an unzip tool on Windows may make of a name: its NFKC form, or a code page's "best fit"
# (the yen and won signs are the Japanese and Korean code pages' backslash).
_SEPARATOR_LOOKALIKES = str.maketrans(
    {"\u00a5": "\\", "\u20a9": "\\", "\u2215": "/", "\u2044": "/", "\u2236": ":"}
)
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(10)), *(f"LPT{n}" for n in range(10))}


def _windows_writes_it_in_place(segment: str) -> bool:
    seen = unicodedata.normalize("NFKC", segment).translate(_SEPARATOR_LOOKALIKES)
    return (
        seen.strip(". ") != ""
        and not seen.endswith((".", " "))
        and not any(char in '/\\<>:"|?*' or ord(char) < 32 for char in seen)
        and seen.split(".")[0].strip().upper() not in _RESERVED
    )


@pytest.mark.parametrize(
    ("job_name", "path"),
    [
        ("build", "\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fevil.txt"),  # fullwidth: "../../evil.txt" once NFKC
        ("build", "\u2025/\uff3cwindows\u2215x"),  # two dot leader "..", fullwidth backslash, division slash
        ("build", "dist/\u00a5..\u00a5x"),  # the yen sign is the Japanese code page's backslash
        ("build", "a:b/c?.txt"),
        ("build", 'r<e>p|o"r*t'),
        ("build", "con/aux.txt"),
        ("build", "COM\u00b9.log"),  # superscript one: COM1 once NFKC
        ("build", "dist. /notes. "),  # Windows drops trailing dots and spaces: ".. " is ".."
        ("build", ".. /x"),
        ("build", "a\x01b"),
        ("\uff0e\uff0e", "x"),
        ("nul", "x"),
        ("c\uff1a", "x"),  # a drive "c:"
    ],
)
def test_every_segment_of_a_member_is_written_where_it_says_on_windows_too(
    client: TestClient, session: Session, settings: Settings, job_name: str, path: str
) -> None:
    """Rows kept before uploads refused such paths are safe too: the zip cleans every segment
    of a member's name as it cleans a job's folder."""
    build = factories.build(session, factories.repository(session, public=True))
    job = factories.job(session, build)
    job.name = job_name
    keep(session, store_of(settings), job, path, b"x")
    session.commit()
    reply = client.get(f"/api/builds/{build.id}/artifacts.zip")
    assert reply.status_code == 200, reply.text
    [name] = zipfile.ZipFile(io.BytesIO(reply.content)).namelist()
    segments = name.split("/")
    assert len(segments) == len(path.split("/")) + 1, name
    assert all(_windows_writes_it_in_place(segment) for segment in segments), name


def test_files_made_safe_alike_are_kept_apart(
    client: TestClient, session: Session, settings: Settings
) -> None:
    """Paths kept before uploads refused Windows' characters, or differing only in case, would
    be one file once unzipped: each keeps its own."""
    build = factories.build(session, factories.repository(session, public=True))
    job = factories.job(session, build)
    job.name = "build"
    paths = {
        "dist/a:b.tar.gz": b"1",
        "dist/a_b.tar.gz": b"2",
        "dist/A_B.tar.gz": b"3",
        "con/x": b"4",
        "_con/x": b"5",
    }
    for path, data in paths.items():
        keep(session, store_of(settings), job, path, data)
    session.commit()
    reply = client.get(f"/api/builds/{build.id}/artifacts.zip")
    archive = zipfile.ZipFile(io.BytesIO(reply.content))
    names = archive.namelist()
    assert len({name.casefold() for name in names}) == len(paths), names
    assert sorted(archive.read(name) for name in names) == sorted(paths.values())
    assert "build/dist/a_b (2).tar.gz" in names or "build/dist/A_B (2).tar.gz" in names, names


def test_the_zip_is_made_as_it_is_sent_never_whole_in_memory() -> None:
    """Each piece handed on is at most about one chunk the store read, whatever the file's size."""
    chunk = 1024 * 1024
    blobs = {"big": 24, "small": 1}

    def read(key: str) -> Iterator[bytes]:
        for index in range(blobs[key]):
            yield bytes([index]) * chunk

    members = [Member("job/big.tar.gz", "big", 24 * chunk), Member("job/log.txt", "small", chunk)]
    pieces = list(zipped(members, read))
    assert max(len(piece) for piece in pieces) <= chunk + 1024
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert archive.read("job/big.tar.gz") == b"".join(read("big"))


def test_the_zip_is_read_under_the_repositorys_rule(
    client: TestClient, session: Session, settings: Settings
) -> None:
    store = store_of(settings)
    build, first, _ = two_jobs(session, public=False)
    keep(session, store, first, "dist/app.whl", b"wheel")
    reader = bearer(factories.user_token(session))
    session.commit()
    assert client.get(f"/api/builds/{build.id}/artifacts.zip").status_code == 404
    assert client.get(f"/api/builds/{build.id}/artifacts.zip", headers=reader).status_code == 200


def test_a_build_without_live_files_has_no_zip(
    client: TestClient, session: Session, settings: Settings
) -> None:
    build, first, _ = two_jobs(session)
    keep(session, store_of(settings), first, "old.txt", b"gone", expired=True)
    session.commit()
    reply = client.get(f"/api/builds/{build.id}/artifacts.zip")
    assert reply.status_code == 404 and "no artifacts" in reply.json()["detail"], reply.text


def test_the_build_page_links_the_zip(client: TestClient, session: Session, settings: Settings) -> None:
    build, first, _ = two_jobs(session)
    keep(session, store_of(settings), first, "dist/app.whl", b"wheel")
    session.commit()
    url = client.get(f"/api/builds/{build.id}").json()["url"]
    assert f'href="/api/builds/{build.id}/artifacts.zip"' in client.get(url).text


def test_the_side_list_links_the_build_s_artifacts(
    client: TestClient, session: Session, settings: Settings
) -> None:
    build, first, _ = two_jobs(session)
    keep(session, store_of(settings), first, "dist/app.whl", b"wheel")
    session.commit()
    url = client.get(f"/api/builds/{build.id}").json()["url"]
    nav = client.get(url).text.split('id="steps-nav"', 1)[1].split("</nav>", 1)[0]
    assert re.search(r'<a href="[^"]*#artifacts">Artifacts \(1\)</a>', nav), nav
