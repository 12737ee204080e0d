"""A runner shares caches only with the secret that signs them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runner.config import RunnerSettings


def settings(**given: str) -> RunnerSettings:
    return RunnerSettings(broker_url="redis://127.0.0.1:6379/0", runner_token="t", **given)  # type: ignore[arg-type]


def test_a_shared_store_without_a_signing_secret_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="GREENLIGHT_RUNNER_CACHE_S3_SECRET"):
        settings(runner_cache_s3_bucket="caches")


def test_a_short_signing_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="GREENLIGHT_RUNNER_CACHE_S3_SECRET"):
        settings(runner_cache_s3_bucket="caches", runner_cache_s3_secret="short")


def test_a_shared_store_with_a_signing_secret_is_taken() -> None:
    secret = "s" * 32
    assert settings(runner_cache_s3_bucket="caches", runner_cache_s3_secret=secret).runner_cache_s3_secret
