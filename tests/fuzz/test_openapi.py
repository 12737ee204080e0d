"""The app's own OpenAPI document, fuzzed (in the manner of schemathesis, which has no wheel in
this environment): every operation gets generated path parameters, query parameters and JSON
bodies, without a token, with a user token and with a runner token, on real Postgres. No
request may produce a 5xx. The webhook gets signed arbitrary bodies: a 2xx or a 4xx, never 5xx."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from server.webhooks.signature import sign
from tests import factories
from tests.conftest import WEBHOOK_SECRET
from tests.fixtures import github_payload
from tests.fuzz.strategies import json_values, mutated

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
path_values = st.integers(-(2**63), 2**63) | st.text(
    st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=30
)


def operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    document = client.get("/openapi.json").json()
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def body_for(operation: dict[str, Any], document: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any JSON, or an object with the schema's own property names holding any JSON."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return st.none()
    schema = content.get("schema", {})
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    names = list(schema.get("properties", {}))
    shaped = st.fixed_dictionaries({}, optional={name: json_values for name in names}) if names else st.none()
    return json_values | shaped


def test_no_operation_answers_5xx(client: TestClient, session: Session) -> None:
    user = factories.user_token(session)
    runner = factories.runner_token(session)
    repo = factories.repository(session, "acme/widgets")
    factories.job(session, factories.build(session, repo))
    session.commit()
    document = client.get("/openapi.json").json()
    ops = operations(client)
    assert len(ops) > 5

    @st.composite
    def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, Any], Any, dict[str, str]]:
        method, path, operation = draw(st.sampled_from(ops))
        parameters = operation.get("parameters", [])
        for parameter in parameters:
            if parameter["in"] == "path":
                path = path.replace("{" + parameter["name"] + "}", quote(str(draw(path_values)), safe=""))
        query = {
            parameter["name"]: draw(st.none() | path_values)
            for parameter in parameters
            if parameter["in"] == "query"
        }
        body = draw(body_for(operation, document))
        token = draw(st.sampled_from([None, user, runner, "glu_not-a-token"]))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return method, path, {k: v for k, v in query.items() if v is not None}, body, headers

    @FUZZ
    @given(requests())
    def one(request: tuple[str, str, dict[str, Any], Any, dict[str, str]]) -> None:
        method, path, query, body, headers = request
        content = None if body is None else json.dumps(body).encode()
        reply = client.request(method, path, params=query, content=content,
                                headers={**headers, "Content-Type": "application/json"})  # fmt: skip
        assert reply.status_code < 500, (method, path, query, body, reply.status_code, reply.text[:300])

    one()


def test_signed_arbitrary_webhook_bodies_get_2xx_or_4xx(client: TestClient, session: Session) -> None:
    factories.repository(session, "octocat/Hello-World")
    session.commit()
    real = st.sampled_from(["push", "pull_request_opened", "push_tag", "pull_request_from_fork"])
    bodies = (
        json_values.map(lambda value: ("push", value))
        | real.flatmap(lambda name: mutated(github_payload(name)).map(lambda value: (name, value)))
    )  # fmt: skip
    counter = iter(range(10**9))

    @FUZZ
    @given(bodies)
    def one(named: tuple[str, Any]) -> None:
        name, payload = named
        event = "pull_request" if name.startswith("pull_request") else "push"
        body = json.dumps(payload).encode()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": f"fuzz-{next(counter)}",
            "X-GitHub-Hook-ID": "1",
            "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body),
        }
        reply = client.post("/webhooks/github", content=body, headers=headers)
        assert reply.status_code in (200, 202, 400), (reply.status_code, reply.text[:300])

    one()


def test_an_id_beyond_the_database_integer_range_is_a_4xx_not_a_503(client: TestClient) -> None:
    # Found by the fuzzer above: Postgres refused the value and the reply said "database unavailable".
    reply = client.get(f"/api/builds/{2**31}")
    assert reply.status_code == 422 and "out of range" in reply.json()["detail"]


def test_a_body_holding_infinity_gets_a_422_not_a_500(client: TestClient, session: Session) -> None:
    # Found by the fuzzer above: FastAPI echoed the input in its 422 and could not encode Infinity.
    token = factories.runner_token(session)
    session.commit()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    reply = client.post("/api/runner/register", content=b'{"name": "r", "labels": Infinity}', headers=headers)
    assert reply.status_code == 422
    assert any(error["input"] == "inf" for error in reply.json()["detail"] if "input" in error)
