"""The one error shape, from the handlers `create_app` installs (api.errors)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy.exc
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from api.errors import INTERNAL_MESSAGE, install_error_handlers
from tests.errors import error_of


class Body(BaseModel):
    prompt: str = Field(max_length=5)
    count: int = 1


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/string")
    async def string() -> None:
        raise HTTPException(404, "job j1 not found")

    @app.get("/dict")
    async def with_code() -> None:
        raise HTTPException(
            409,
            {"code": "idempotency_key_reused", "message": "key used for another body", "job": "j"},
        )

    @app.get("/dict-without-code")
    async def without_code() -> None:
        raise HTTPException(409, {"message": "a run is in progress", "running_run_id": "r1"})

    @app.get("/limited")
    async def limited() -> None:
        raise HTTPException(429, "slow down", headers={"Retry-After": "3"})

    @app.post("/body")
    async def body(body: Body, limit: int = 10) -> dict[str, Any]:
        return body.model_dump()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret path /var/lib/db.sqlite and token s3cr3t")

    @app.get("/database-down")
    async def database_down() -> None:
        # What the PostgreSQL driver raises through SQLAlchemy when the server is gone.
        raise sqlalchemy.exc.OperationalError(
            "SELECT 1", {}, ConnectionRefusedError("connection to 10.0.0.5 refused")
        )

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    # raise_server_exceptions=False: see the 500 the client sees, not the test-side re-raise
    return TestClient(make_app(), raise_server_exceptions=False)


def test_string_detail_is_the_message(client: TestClient) -> None:
    response = client.get("/string")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "job j1 not found", "details": {}}
    }


def test_dict_detail_gives_its_code_and_the_rest_as_details(client: TestClient) -> None:
    response = client.get("/dict")
    assert response.status_code == 409
    assert response.json() == {"error": {"code": "idempotency_key_reused",
                                          "message": "key used for another body",
                                          "details": {"job": "j"}}}  # fmt: skip
    without = client.get("/dict-without-code").json()["error"]
    assert without == {"code": "conflict", "message": "a run is in progress",
                       "details": {"running_run_id": "r1"}}  # fmt: skip


def test_headers_of_the_exception_are_kept(client: TestClient) -> None:
    response = client.get("/limited")
    assert response.status_code == 429 and response.headers["retry-after"] == "3"
    assert error_of(response)["code"] == "rate_limited"


def test_validation_error_summarizes_and_lists_fields(client: TestClient) -> None:
    response = client.post("/body?limit=x", json={"prompt": "far too long", "count": "many"})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    fields = error["details"]["fields"]
    assert {tuple(f["loc"]) for f in fields} == {
        ("body", "prompt"), ("body", "count"), ("query", "limit")
    }  # fmt: skip
    assert all(set(f) == {"loc", "msg", "type"} for f in fields)
    assert "body.prompt: " in error["message"] and "query.limit: " in error["message"]
    assert "far too long" not in response.text  # the input is not echoed back


def test_unknown_route_and_method_have_the_shape(client: TestClient) -> None:
    assert error_of(client.get("/nowhere"))["code"] == "not_found"
    response = client.delete("/string")
    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"


def test_unhandled_exception_is_a_500_without_its_text(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": INTERNAL_MESSAGE, "details": {}}
    }
    assert "s3cr3t" not in response.text and "sqlite" not in response.text
    assert any(r.exc_info and "s3cr3t" in str(r.exc_info[1]) for r in caplog.records)


def test_a_database_outage_is_a_503_to_retry_without_its_text(client: TestClient) -> None:
    response = client.get("/database-down")
    assert response.status_code == 503 and response.headers["retry-after"].isdigit()
    assert error_of(response)["code"] == "database_unavailable"
    assert "10.0.0.5" not in response.text and "SELECT" not in response.text


def test_openapi_documents_the_shape() -> None:
    schema = make_app().openapi()
    assert set(schema["components"]["schemas"]["Error"]["properties"]) == {"error"}
    responses = schema["paths"]["/body"]["post"]["responses"]
    assert responses["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert "4XX" in responses and "5XX" in responses
    assert "HTTPValidationError" not in schema["components"]["schemas"]
