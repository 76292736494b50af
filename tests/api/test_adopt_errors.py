"""Adoption when the provider is unreachable, slow, throttling or failing: a 502/503 with the
reason, never a 500. The real app (its lifespan, SQLite) with the provider's HTTP replaced."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.main import create_app
from core.migrate import upgrade
from core.settings import Settings
from providers.replicate import ReplicateProvider, ReplicateSettings
from tests.errors import error_message, error_of

ADOPT = {"provider": "replicate", "provider_job_id": "p-123"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(url)
    nowhere = f"http://127.0.0.1:{closed_port()}"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        secret_key="test-secret-key-0123456789",
        bootstrap_api_keys="admin-key=root:admin,alice-key=alice",
        temporal_address=f"127.0.0.1:{closed_port()}",
        storage_dir=str(tmp_path / "storage"),
    ).using(ReplicateSettings(_env_file=None, base_url=nowhere, api_token="t"))  # type: ignore[call-arg]
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def api(app: FastAPI, key: str = "admin-key") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://api",
        headers={"Authorization": f"Bearer {key}"},
    )


def provider_answering(app: FastAPI, handler: Callable[[httpx.Request], httpx.Response]) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    app.state.providers["replicate"] = ReplicateProvider(
        http, base_url="http://replicate.test", api_token="t"
    )


async def test_adoption_needs_an_admin(app: FastAPI) -> None:
    async with api(app, "alice-key") as alice:
        response = await alice.post("/v1/jobs/adopt", json=ADOPT)
    assert response.status_code == 403, response.text


async def test_an_unreachable_provider_is_a_502(app: FastAPI) -> None:
    async with api(app) as admin:
        response = await admin.post("/v1/jobs/adopt", json=ADOPT)
    assert response.status_code == 502, response.text
    assert error_of(response)["code"] == "provider_unreachable"
    assert "replicate could not be reached" in error_message(response)


def timing_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("slow", request=request)


@pytest.mark.parametrize(
    ("handler", "code", "hint"),
    [
        (timing_out, "provider_unavailable", "did not answer in time"),
        (lambda r: httpx.Response(500, json={"detail": "boom"}), "provider_unavailable", "boom"),
        (lambda r: httpx.Response(429, json={"detail": "slow down"}, headers={"Retry-After": "7"}),
         "provider_rate_limited", "rate limiting"),
    ],
)  # fmt: skip
async def test_a_failing_provider_is_a_503_with_the_reason(
    app: FastAPI, handler: Callable[[httpx.Request], httpx.Response], code: str, hint: str
) -> None:
    provider_answering(app, handler)
    async with api(app) as admin:
        response = await admin.post("/v1/jobs/adopt", json=ADOPT)
    assert response.status_code == 503, response.text
    assert error_of(response)["code"] == code and hint in error_message(response)
    if code == "provider_rate_limited":
        assert response.headers["Retry-After"] == "7"


async def test_a_job_the_provider_does_not_know_is_a_422(app: FastAPI) -> None:
    provider_answering(app, lambda r: httpx.Response(404, json={"detail": "Not found"}))
    async with api(app) as admin:
        response = await admin.post("/v1/jobs/adopt", json=ADOPT)
    assert response.status_code == 422 and "provider_job_id" in error_message(response)


async def test_a_model_that_climbs_is_refused_before_any_call(app: FastAPI) -> None:
    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"called {request.url}")

    provider_answering(app, never)
    async with api(app) as admin:
        for model in ("../../v1/anything", "owner/..", "../.."):
            response = await admin.post("/v1/jobs/adopt", json={**ADOPT, "model": model})
            assert response.status_code == 422, response.text
            assert "model" in error_message(response)
