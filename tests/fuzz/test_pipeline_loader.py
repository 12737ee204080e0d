"""Property: any text as .greenlight.yml gives a pipeline or a ConfigError naming the file."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.pipelines.loader import ConfigError, load_pipeline
from tests.fuzz.strategies import json_values, mutated

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = {
    "image": "python:3.12",
    "env": {"APP_ENV": "test"},
    "services": {"db": {"image": "postgres:16", "env": {"POSTGRES_PASSWORD": "test"}}},
    "steps": [
        {"name": "install", "run": "pip install -r requirements.txt"},
        {"name": "test", "run": "pytest -q", "timeout": "10m"},
    ],
    "when": {"branch": ["main", "feature/*"]},
}


def check(text: str) -> None:
    try:
        pipeline = load_pipeline(text)
    except ConfigError as error:
        assert str(error).startswith(".greenlight.yml"), str(error)
        return
    assert pipeline.steps


@settings(FUZZ)
@given(st.text(max_size=400))
def test_any_text(text: str) -> None:
    check(text)


@settings(FUZZ)
@given(json_values)
def test_any_yaml_document(data: Any) -> None:
    check(yaml.safe_dump(data))


@settings(FUZZ)
@given(mutated(VALID))
def test_a_valid_pipeline_with_fields_replaced(data: dict[str, Any]) -> None:
    check(yaml.safe_dump(data))


def test_the_unmutated_pipeline_loads() -> None:
    assert [step.name for step in load_pipeline(yaml.safe_dump(VALID)).steps] == ["install", "test"]
