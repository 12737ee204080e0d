"""The secrets API on real Postgres: user token required, values go in encrypted and never out."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from server.models import Secret
from tests import factories

pytestmark = pytest.mark.integration

VALUE = "ghp_0123456789abcdefSECRET"
URL = "/api/repos/acme/widgets/secrets"


def test_set_stores_only_ciphertext_and_answers_without_the_value(
    client: TestClient, session: Session, auth: dict[str, str]
) -> None:
    reply = client.put(f"{URL}/DEPLOY_TOKEN", json={"value": VALUE}, headers=auth)
    assert reply.status_code == 201, reply.text
    assert reply.json()["name"] == "DEPLOY_TOKEN" and VALUE not in reply.text
    stored = session.query(Secret).one()
    assert VALUE.encode() not in stored.ciphertext and stored.environment == ""
    again = client.put(f"{URL}/DEPLOY_TOKEN", json={"value": VALUE + "2", "branches": ["main"]}, headers=auth)
    assert again.status_code == 200 and again.json()["branches"] == ["main"]
    session.expire_all()
    assert session.query(Secret).count() == 1


def test_list_gives_names_and_scopes_never_values(
    client: TestClient, session: Session, auth: dict[str, str]
) -> None:
    client.put(f"{URL}/A_TOKEN", json={"value": VALUE}, headers=auth)
    client.put(
        f"{URL}/DEPLOY_KEY", json={"value": VALUE + "-prod", "environment": "production"}, headers=auth
    )
    client.put(f"{URL}/DEPLOY_KEY", json={"value": VALUE + "-any", "branches": ["release/*"]}, headers=auth)
    reply = client.get(URL, headers=auth)
    assert reply.status_code == 200 and VALUE not in reply.text
    assert [(s["name"], s["environment"], s["branches"]) for s in reply.json()] == [
        ("A_TOKEN", None, []),
        ("DEPLOY_KEY", None, ["release/*"]),
        ("DEPLOY_KEY", "production", []),
    ]


def test_every_route_needs_a_user_token(client: TestClient, session: Session, auth: dict[str, str]) -> None:
    runner = {"Authorization": f"Bearer {factories.runner_token(session)}"}
    session.commit()
    for headers in ({}, runner, {"Authorization": "Bearer glu_nope"}):
        assert client.get(URL, headers=headers).status_code == 401
        assert client.put(f"{URL}/X_TOKEN", json={"value": VALUE}, headers=headers).status_code == 401
        assert client.delete(f"{URL}/X_TOKEN", headers=headers).status_code == 401
    assert session.query(Secret).count() == 0


def test_a_too_short_value_is_refused_with_a_clear_message_and_stores_nothing(
    client: TestClient, session: Session, auth: dict[str, str]
) -> None:
    reply = client.put(f"{URL}/PIN", json={"value": "1234"}, headers=auth)
    assert reply.status_code == 422
    assert "at least 8" in reply.json()["detail"] and "1234" not in reply.text
    assert session.query(Secret).count() == 0


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("1BAD", {"value": VALUE}, "not a valid secret name"),
        ("GREENLIGHT_REPO", {"value": VALUE}, "reserved"),
        ("OK_NAME", {"value": VALUE, "environment": "prod env"}, "not a valid environment"),
        ("OK_NAME", {"value": VALUE, "branches": ["a b"]}, "not a branch name"),
        ("OK_NAME", {"value": VALUE, "branches": ["{1..5000}"]}, "braces may make at most 64"),
        ("OK_NAME", {"value": VALUE, "surprise": 1}, "surprise"),
    ],
)
def test_bad_input_gets_a_clear_422_that_never_echoes_the_value(
    client: TestClient,
    session: Session,
    auth: dict[str, str],
    name: str,
    body: dict[str, object],
    expected: str,
) -> None:
    reply = client.put(f"{URL}/{name}", json=body, headers=auth)
    assert reply.status_code == 422 and expected in reply.json()["detail"], reply.text
    assert VALUE not in reply.text
    assert session.query(Secret).count() == 0


def test_a_body_that_is_not_a_mapping_is_refused_without_echoing_it(
    client: TestClient, auth: dict[str, str]
) -> None:
    for body in (f'"{VALUE}"', f'["{VALUE}"]', f"value={VALUE}"):
        reply = client.put(f"{URL}/TOKEN", content=body, headers={**auth, "Content-Type": "application/json"})
        assert reply.status_code == 422 and VALUE not in reply.text, reply.text


def test_deeply_nested_json_or_a_huge_number_is_a_422_not_a_500(
    client: TestClient, auth: dict[str, str]
) -> None:
    for body in ("[" * 100_000 + "]" * 100_000, '{"value": ' + "9" * 100_000 + "}"):
        reply = client.put(f"{URL}/TOKEN", content=body, headers={**auth, "Content-Type": "application/json"})
        assert reply.status_code == 422, reply.text[:300]
        assert reply.json() == {"detail": 'the body must be JSON: {"value": "..."}'}


def test_delete_removes_one_scope_and_404s_when_absent(
    client: TestClient, session: Session, auth: dict[str, str]
) -> None:
    client.put(f"{URL}/DEPLOY_KEY", json={"value": VALUE}, headers=auth)
    client.put(f"{URL}/DEPLOY_KEY", json={"value": VALUE, "environment": "staging"}, headers=auth)
    assert (
        client.delete(f"{URL}/DEPLOY_KEY", params={"environment": "staging"}, headers=auth).status_code == 204
    )
    assert [s["environment"] for s in client.get(URL, headers=auth).json()] == [None]
    assert (
        client.delete(f"{URL}/DEPLOY_KEY", params={"environment": "staging"}, headers=auth).status_code == 404
    )
    assert client.delete(f"{URL}/DEPLOY_KEY", headers=auth).status_code == 204
    assert session.query(Secret).count() == 0


def test_an_unregistered_repository_is_404(client: TestClient, auth: dict[str, str]) -> None:
    assert (
        client.put("/api/repos/acme/nope/secrets/TOKEN", json={"value": VALUE}, headers=auth).status_code
        == 404
    )
    assert client.get("/api/repos/acme/nope/secrets", headers=auth).status_code == 404


def test_the_openapi_document_describes_the_body_but_no_value_comes_back(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    put = document["paths"]["/api/repos/{owner}/{name}/secrets/{secret_name}"]["put"]
    assert "value" in put["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "value" not in document["components"]["schemas"]["SecretOut"]["properties"]
