"""Fixtures for tests that talk to GitHub: a fake GitHub on a local port and a client pointed at
it, its pauses recorded rather than slept. Imported by the conftests that need them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from server.github.client import GitHubClient, RetryPolicy
from tests.support.fake_github import FakeGitHub, running_fake


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    yield from running_fake()


@pytest.fixture
def pauses() -> list[float]:
    return []


@pytest.fixture
def github(fake_github: FakeGitHub, pauses: list[float]) -> Iterator[GitHubClient]:
    client = GitHubClient(
        fake_github.url, fake_github.token, timeout=5.0, retry=RetryPolicy(retries=2), sleep=pauses.append
    )
    yield client
    client.close()
