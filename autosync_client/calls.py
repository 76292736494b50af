"""Every API call the client makes, described once: method, route, parameters, body, and how
to read the answer. `Client` and `AsyncClient` only send these, so the two can't drift, and
the contract test checks each one against the API's OpenAPI schema (a renamed route or
parameter fails it).

Each function here is a call by the name of the client method that makes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from autosync_client.models import (
    ApiKey,
    ApiKeyCreated,
    ApiKeyList,
    Batch,
    BatchStarted,
    Job,
    JobPage,
    LogPage,
    Me,
    Schedule,
    SyncRun,
    SyncRunPage,
    Usage,
)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., "Call[Any]"])

IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    route: str  # the OpenAPI path template, e.g. /v1/jobs/{job_id}
    parse: Callable[[httpx.Response], T]
    path_params: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    model: Any = None  # what the answer is read as (the contract test compares its fields)

    @property
    def path(self) -> str:
        return self.route.format(**{k: quote(v, safe="") for k, v in self.path_params.items()})

    @property
    def query(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if v is not None}


CALLS: dict[str, Callable[..., Call[Any]]] = {}


def call(fn: F) -> F:
    CALLS[fn.__name__] = fn
    return fn


def _as(model: Any) -> Callable[[httpx.Response], Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    return lambda response: adapter.validate_python(response.json())


def _none(response: httpx.Response) -> None:
    return None


def _c(
    method: str,
    route: str,
    model: Any,
    *,
    path: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> Call[Any]:
    return Call(
        method=method,
        route=route,
        parse=_none if model is None else _as(model),
        path_params=path or {},
        params=params or {},
        json=json,
        headers=headers or {},
        model=model,
    )


def _body(**fields: Any) -> dict[str, Any]:
    return {
        k: v.isoformat() if isinstance(v, date) else v for k, v in fields.items() if v is not None
    }


def _idempotency(key: str | None) -> dict[str, str]:
    return {IDEMPOTENCY_HEADER: key} if key else {}


def _bulk(ids: list[str] | None, filter: dict[str, Any] | None) -> dict[str, Any]:
    if (ids is None) == (filter is None):
        raise ValueError("give either ids or filter")
    return {"ids": ids} if ids is not None else {"filter": filter}


# --- who am I, live stream --------------------------------------------------------------------


@call
def me() -> Call[Me]:
    return _c("GET", "/v1/me", Me)


@call
def latest_event_id() -> Call[dict[str, int]]:
    return _c("GET", "/v1/events/latest", dict[str, int])


# --- jobs -------------------------------------------------------------------------------------


@call
def create_job(
    kind: str,
    input: dict[str, Any],
    *,
    provider: str | None = None,
    model: str | None = None,
    project_id: str | None = None,
    node_id: str | None = None,
    idempotency_key: str | None = None,
) -> Call[Job]:
    body = _body(kind=kind, input=input, provider=provider, model=model,
                 project_id=project_id, node_id=node_id)  # fmt: skip
    return _c("POST", "/v1/jobs", Job, json=body, headers=_idempotency(idempotency_key))


@call
def get_job(job_id: str) -> Call[Job]:
    return _c("GET", "/v1/jobs/{job_id}", Job, path={"job_id": job_id})


@call
def list_jobs(
    *,
    status: str | None = None,
    kind: str | None = None,
    project_id: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[JobPage]:
    params = {"status": status, "kind": kind, "project_id": project_id, "limit": limit,
              "cursor": cursor}  # fmt: skip
    return _c("GET", "/v1/jobs", JobPage, params=params)


@call
def cancel_job(job_id: str, *, reason: str | None = None) -> Call[Job]:
    body = _body(reason=reason) or None
    return _c("POST", "/v1/jobs/{job_id}/cancel", Job, path={"job_id": job_id}, json=body)


@call
def rerun_job(job_id: str, *, input: dict[str, Any] | None = None) -> Call[Job]:
    """A new job with the same input (or `input`), linked by `rerun_of`."""
    body = _body(input=input) or None
    return _c("POST", "/v1/jobs/{job_id}/rerun", Job, path={"job_id": job_id}, json=body)


@call
def cancel_jobs(
    *, ids: list[str] | None = None, filter: dict[str, Any] | None = None
) -> Call[BatchStarted]:
    """Cancel many jobs at once, by ids or by filter; follow the batch with `get_batch`."""
    return _c("POST", "/v1/jobs/cancel", BatchStarted, json=_bulk(ids, filter))


@call
def rerun_jobs(
    *, ids: list[str] | None = None, filter: dict[str, Any] | None = None
) -> Call[BatchStarted]:
    return _c("POST", "/v1/jobs/rerun", BatchStarted, json=_bulk(ids, filter))


@call
def get_batch(batch_id: str) -> Call[Batch]:
    return _c("GET", "/v1/jobs/batches/{batch_id}", Batch, path={"batch_id": batch_id})


@call
def usage(
    *, group_by: str | None = None, from_: str | None = None, to: str | None = None
) -> Call[Usage]:
    """Spend and counts by day, kind, provider or user; `from_`/`to` are dates (YYYY-MM-DD)."""
    return _c("GET", "/v1/usage", Usage, params={"group_by": group_by, "from": from_, "to": to})


# --- sync runs (admins) -----------------------------------------------------------------------


@call
def start_sync_run(
    company_id: str,
    *,
    mode: str = "incremental",
    month: str | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
    modules: list[str] | None = None,
    idempotency_key: str | None = None,
) -> Call[SyncRun]:
    body = _body(company_id=company_id, mode=mode, month=month, start_date=start_date,
                 end_date=end_date, modules=modules)  # fmt: skip
    return _c("POST", "/v1/sync-runs", SyncRun, json=body, headers=_idempotency(idempotency_key))


@call
def get_sync_run(run_id: str) -> Call[SyncRun]:
    return _c("GET", "/v1/sync-runs/{run_id}", SyncRun, path={"run_id": run_id})


@call
def list_sync_runs(
    *,
    company_id: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[SyncRunPage]:
    params = {"company_id": company_id, "status": status, "limit": limit, "cursor": cursor}
    return _c("GET", "/v1/sync-runs", SyncRunPage, params=params)


@call
def sync_run_logs(
    run_id: str,
    *,
    level: str | None = None,
    module: str | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> Call[LogPage]:
    params = {"level": level, "module": module, "after": after, "limit": limit}
    return _c("GET", "/v1/sync-runs/{run_id}/logs", LogPage, path={"run_id": run_id},
              params=params)  # fmt: skip


@call
def cancel_sync_run(run_id: str) -> Call[SyncRun]:
    return _c("POST", "/v1/sync-runs/{run_id}/cancel", SyncRun, path={"run_id": run_id})


# --- schedules (admins) -----------------------------------------------------------------------


@call
def list_schedules() -> Call[list[Schedule]]:
    return _c("GET", "/v1/schedules", list[Schedule])


@call
def get_schedule(company_id: str) -> Call[Schedule]:
    return _c("GET", "/v1/schedules/{company_id}", Schedule, path={"company_id": company_id})


@call
def create_schedule(company_id: str, every_minutes: int, *, paused: bool = False) -> Call[Schedule]:
    body = _body(company_id=company_id, every_minutes=every_minutes, paused=paused)
    return _c("POST", "/v1/schedules", Schedule, json=body)


@call
def retime_schedule(company_id: str, every_minutes: int) -> Call[Schedule]:
    return _c("PATCH", "/v1/schedules/{company_id}", Schedule, path={"company_id": company_id},
              json={"every_minutes": every_minutes})  # fmt: skip


def _schedule_action(action: str, company_id: str) -> Call[Schedule]:
    return _c("POST", f"/v1/schedules/{{company_id}}/{action}", Schedule,
              path={"company_id": company_id})  # fmt: skip


@call
def pause_schedule(company_id: str) -> Call[Schedule]:
    return _schedule_action("pause", company_id)


@call
def resume_schedule(company_id: str) -> Call[Schedule]:
    return _schedule_action("resume", company_id)


@call
def trigger_schedule(company_id: str) -> Call[Schedule]:
    return _schedule_action("trigger", company_id)


@call
def delete_schedule(company_id: str) -> Call[None]:
    return _c("DELETE", "/v1/schedules/{company_id}", None, path={"company_id": company_id})


# --- API keys (admins) ------------------------------------------------------------------------


@call
def list_api_keys(*, user_id: str | None = None) -> Call[ApiKeyList]:
    return _c("GET", "/v1/api-keys", ApiKeyList, params={"user_id": user_id})


@call
def create_api_key(user_id: str, name: str, *, admin: bool | None = None) -> Call[ApiKeyCreated]:
    body = _body(user_id=user_id, name=name, admin=admin)
    return _c("POST", "/v1/api-keys", ApiKeyCreated, json=body)


@call
def get_api_key(api_key_id: str) -> Call[ApiKey]:
    return _c("GET", "/v1/api-keys/{api_key_id}", ApiKey, path={"api_key_id": api_key_id})


@call
def revoke_api_key(api_key_id: str) -> Call[ApiKey]:
    return _c("DELETE", "/v1/api-keys/{api_key_id}", ApiKey, path={"api_key_id": api_key_id})


def response_model(model: Any) -> type[BaseModel] | None:
    """The pydantic model of an answer (the item's for a list), for the contract test."""
    args = getattr(model, "__args__", None)
    if args:
        model = args[0]
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None
