"""Text no column can hold (NUL, lone surrogates) is a 422 at the boundary (api.text_guard).

On PostgreSQL a NUL in an id was a 500 from the driver; a `"\\ud800"` in a job's input was a
500 on any database."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import install_error_handlers
from api.text_guard import UnstorableText
from tests.errors import error_of

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(UnstorableText)

    @app.post("/things")
    async def create(body: dict[str, Any]) -> dict[str, Any]:
        return body

    @app.get("/things/{thing_id}")
    async def read(thing_id: str, q: str = "") -> dict[str, str]:
        return {"id": thing_id, "q": q}

    @app.post("/webhooks/{provider}")
    async def webhook(provider: str) -> dict[str, str]:
        return {"ok": provider}

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (b'{"input": {"prompt": "a\\u0000b"}}', ["body", "input", "prompt"]),
        (b'{"input": {"prompt": "\\ud800"}}', ["body", "input", "prompt"]),
        (b'{"nodes": [{"id": "ok"}, {"id": "\\udfff tail"}]}', ["body", "nodes", 1, "id"]),
        (b'{"content": {"\\u0000": 1}}', ["body", "content", "\\x00"]),
    ],
)
def test_unstorable_text_in_a_json_body_is_a_422_that_says_where(
    client: TestClient, raw: bytes, loc: list[Any]
) -> None:
    response = client.post("/things", content=raw, headers=JSON)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert error["details"]["fields"][0]["loc"] == loc
    assert error["details"]["fields"][0]["type"] == "unstorable_text"


def test_a_body_without_a_content_type_is_read_as_json_too(client: TestClient) -> None:
    response = client.post("/things", content=b'{"prompt": "\\ud800"}')
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("url", ["/things/a%00b", "/things/x?q=%00", "/webhooks/fal%00"])
def test_a_nul_in_the_url_is_a_422(client: TestClient, url: str) -> None:
    response = client.get(url) if "webhooks" not in url else client.post(url)
    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "validation_error"


def test_text_that_can_be_stored_goes_through(client: TestClient) -> None:
    body = {"prompt": "caf\u00e9 \U0001f98a \\u0000 as written", "n": [1, {"k": "v"}]}
    response = client.post("/things", json=body)
    assert response.status_code == 200 and response.json() == body
    assert client.get("/things/caf%C3%A9?q=%2500").json() == {"id": "caf\u00e9", "q": "%00"}


def test_a_webhook_body_is_left_to_its_route(client: TestClient) -> None:
    response = client.post("/webhooks/fal", content=b'{"x": "\\u0000"}', headers=JSON)
    assert response.status_code == 200


def test_what_is_not_json_is_left_to_the_route(client: TestClient) -> None:
    nested = b"[" * 100_000
    response = client.post("/things", content=nested, headers=JSON)
    assert 400 <= response.status_code < 500
    assert error_of(response)["code"] in {"bad_request", "validation_error"}
