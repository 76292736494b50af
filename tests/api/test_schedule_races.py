"""A schedule deleted while a request works on it is a 404, never a 500 (api.routes.schedules).

The fake Temporal client plays the race deterministically: the schedule exists when the route
first looks, and is gone by the time it acts (PATCH racing a DELETE)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from temporalio.service import RPCError, RPCStatusCode

from api.deps import get_temporal, require_admin
from api.errors import install_error_handlers
from api.routes import schedules
from tests.errors import error_of


def _rpc(status: RPCStatusCode, message: str) -> RPCError:
    return RPCError(message, status, b"")


NOT_FOUND = _rpc(RPCStatusCode.NOT_FOUND, "schedule not found")
# What Temporal answers a call that meets the delete halfway (seen against the dev server).
CLOSING = _rpc(RPCStatusCode.FAILED_PRECONDITION, "Workflow execution closed before ...")
HUNG = _rpc(RPCStatusCode.CANCELLED, "Timeout expired")


class FakeTemporal:
    """The schedule is there for the route's first look only; then `act` fails as told and
    every later look finds it deleted (unless `down`: nothing answers at all)."""

    def __init__(self, act: RPCError, down: bool = False) -> None:
        self.act = act
        self.down = down
        self.looks = 0

    def get_schedule_handle(self, schedule_id: str) -> FakeTemporal:
        return self

    async def describe(self, **kwargs: Any) -> Any:
        self.looks += 1
        if self.down:
            raise self.act
        if self.looks > 1:
            raise NOT_FOUND
        return SimpleNamespace()

    async def _act(self, *args: Any, **kwargs: Any) -> None:
        raise self.act

    update = pause = unpause = trigger = delete = _act


def client_for(temporal: FakeTemporal) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(schedules.router)
    app.dependency_overrides[get_temporal] = lambda: temporal
    app.dependency_overrides[require_admin] = lambda: SimpleNamespace(user_id="root")
    return TestClient(app, raise_server_exceptions=False)


CALLS = [
    ("PATCH", "/v1/schedules/acme", {"every_minutes": 5}),
    ("DELETE", "/v1/schedules/acme", None),
    ("POST", "/v1/schedules/acme/pause", None),
    ("POST", "/v1/schedules/acme/resume", None),
    ("POST", "/v1/schedules/acme/trigger", None),
]


@pytest.mark.parametrize("failure", [NOT_FOUND, CLOSING, HUNG], ids=["gone", "closing", "hung"])
@pytest.mark.parametrize(("method", "path", "body"), CALLS)
def test_a_schedule_deleted_mid_request_is_a_404(
    method: str, path: str, body: Any, failure: RPCError
) -> None:
    response = client_for(FakeTemporal(failure)).request(method, path, json=body)
    assert response.status_code == 404, response.text
    assert error_of(response) == {
        "code": "not_found", "message": "company acme has no schedule", "details": {}
    }  # fmt: skip


def test_an_unreachable_temporal_is_a_503() -> None:
    down = _rpc(RPCStatusCode.UNAVAILABLE, "connection refused")
    client = client_for(FakeTemporal(down, down=True))
    response = client.patch("/v1/schedules/acme", json={"every_minutes": 5})
    assert response.status_code == 503
    assert error_of(response)["code"] == "unavailable"
    assert "refused" not in response.text


@pytest.mark.parametrize("company", ["a" * 65, "-lead", "caf\u00e9", "a b", "%00"])
def test_a_company_id_that_cannot_be_one_is_a_422(company: str) -> None:
    response = client_for(FakeTemporal(NOT_FOUND)).get(f"/v1/schedules/{company}")
    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "validation_error"
