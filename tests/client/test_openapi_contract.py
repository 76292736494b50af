"""The client against the API's own OpenAPI schema: every call's method and path exist, every
query parameter, header and body field it sends is one the route takes, and every field the
client's models require is in the route's answer. A renamed route, parameter or field fails
here, not in a user's terminal.

Calls to routes not on this branch yet (bulk cancel and rerun, rerun, batches, usage) are
skipped until their routes exist, and checked from then on.
"""

from __future__ import annotations

import inspect
import re
from datetime import date
from typing import Any

import pytest

from api.main import create_app
from autosync_client import AsyncClient, Client, calls
from core.settings import Settings

# Each call with every parameter it can send set, so each one is checked.
SAMPLES: dict[str, dict[str, Any]] = {
    "me": {},
    "latest_event_id": {},
    "create_job": dict(kind="generation", input={"prompt": "p"}, provider="replicate",
                       model="m/n", project_id="p1", node_id="n1", idempotency_key="k"),
    "get_job": dict(job_id="0" * 32),
    "list_jobs": dict(status="failed", kind="generation", project_id="p", limit=5, cursor="c"),
    "cancel_job": dict(job_id="0" * 32, reason="r"),
    "rerun_job": dict(job_id="0" * 32, input={"prompt": "p"}),
    "cancel_jobs": dict(ids=["a"]),
    "rerun_jobs": dict(filter={"status": ["failed"]}),
    "get_batch": dict(batch_id="b1"),
    "usage": dict(group_by="day", from_="2026-11-01", to="2026-11-30"),
    "start_sync_run": dict(company_id="acme", mode="period", month=None,
                           start_date=date(2024, 1, 1), end_date=date(2024, 1, 31),
                           modules=["sales"], idempotency_key="k"),
    "get_sync_run": dict(run_id="r1"),
    "list_sync_runs": dict(company_id="acme", status="DONE", limit=5, cursor="c"),
    "sync_run_logs": dict(run_id="r1", level="info", module="sales", after=3, limit=5),
    "cancel_sync_run": dict(run_id="r1"),
    "list_schedules": {},
    "get_schedule": dict(company_id="acme"),
    "create_schedule": dict(company_id="acme", every_minutes=5, paused=True),
    "retime_schedule": dict(company_id="acme", every_minutes=5),
    "pause_schedule": dict(company_id="acme"),
    "resume_schedule": dict(company_id="acme"),
    "trigger_schedule": dict(company_id="acme"),
    "delete_schedule": dict(company_id="acme"),
    "list_api_keys": dict(user_id="u1"),
    "create_api_key": dict(user_id="u1", name="ci", admin=False),
    "get_api_key": dict(api_key_id="0" * 16),
    "revoke_api_key": dict(api_key_id="0" * 16),
}  # fmt: skip


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def _shape(path: str) -> str:
    """A path with its parameters' names left out: /v1/jobs/{} (the client names its own)."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def operation(schema: dict[str, Any], method: str, route: str) -> dict[str, Any] | None:
    for path, operations in schema["paths"].items():
        if _shape(path) == _shape(route) and method.lower() in operations:
            found: dict[str, Any] = operations[method.lower()]
            return found
    return None


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def properties(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Every property an object schema (or any of its anyOf/oneOf/allOf branches) names."""
    node = resolve(schema, node)
    found = dict(node.get("properties", {}))
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in node.get(key, []):
            found |= properties(schema, branch)
    if node.get("type") == "array" and "items" in node:
        found |= properties(schema, node["items"])
    return found


def test_every_call_is_sampled_and_both_clients_make_it() -> None:
    assert set(SAMPLES) == set(calls.CALLS)
    for name, make in calls.CALLS.items():
        expected = list(inspect.signature(make).parameters)
        for cls in (Client, AsyncClient):
            method = getattr(cls, name, None)
            assert method is not None, f"{cls.__name__} has no {name}"
            assert list(inspect.signature(method).parameters)[1:] == expected, (cls, name)
            assert inspect.iscoroutinefunction(method) == (cls is AsyncClient), (cls, name)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_call_matches_the_schema(name: str, schema: dict[str, Any]) -> None:
    call = calls.CALLS[name](**SAMPLES[name])
    op = operation(schema, call.method, call.route)
    if op is None:
        if any(_shape(p) == _shape(call.route) for p in schema["paths"]):
            pytest.fail(f"{call.route} takes no {call.method}")
        pytest.skip(f"{call.method} {call.route} is not on this branch yet")
    params = {(p["in"], p["name"].lower()): p for p in op.get("parameters", [])}
    path_params = {name for (where, name) in params if where == "path"}
    assert len(path_params) == len(call.path_params), (call.route, path_params)
    for key in call.query:
        assert ("query", key.lower()) in params, f"{call.route} takes no query parameter {key}"
    for key in call.headers:
        assert ("header", key.lower()) in params, f"{call.route} takes no header {key}"
    for (where, pname), param in params.items():
        if param.get("required") and where == "query":
            assert pname in call.query, f"{call.route} requires ?{pname}"
    body = op.get("requestBody")
    if call.json is None:
        assert body is None or not body.get("required"), f"{call.route} requires a body"
    else:
        assert body is not None, f"{call.route} takes no body"
        accepted = properties(schema, body["content"]["application/json"]["schema"])
        assert set(call.json) <= set(accepted), (call.route, set(call.json) - set(accepted))
    success = next((code for code in op["responses"] if code.startswith("2")), None)
    assert success is not None
    model = calls.response_model(call.model)
    if model is None:
        return
    content = op["responses"][success].get("content", {}).get("application/json")
    assert content is not None, f"{call.route} answers no JSON"
    answered = properties(schema, content["schema"])
    if not answered:  # a free-form answer (a dict of anything)
        return
    required = {
        field.alias or key for key, field in model.model_fields.items() if field.is_required()
    }
    assert required <= set(answered), (call.route, required - set(answered))


def test_the_check_sees_a_renamed_route(schema: dict[str, Any]) -> None:
    assert operation(schema, "GET", "/v1/jobs/{job_id}") is not None
    assert operation(schema, "GET", "/v1/job/{job_id}") is None
    assert operation(schema, "DELETE", "/v1/jobs/{job_id}") is None
