"""The client API the backend pulls from, for every identity: `/c/{client_id}/api/client/...`,
and `/api/client/...` for the `default` identity (the seed's single client)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulators.pull_client.state import ACTIONS, DEFAULT_CLIENT, ClientIdentity, PullClientEmulator
from emulators.scaffold.app import ApiError, problem
from emulators.scaffold.emulator import emulator_of, state_of

router = APIRouter()
EmulatorDep = Annotated[PullClientEmulator, Depends(state_of(PullClientEmulator))]
_API = "/api/client/"


def classify(method: str, path: str) -> str | None:
    """The kind of a client API call (its route: `sync_data` ...), None for control routes."""
    if path.startswith("/_emulator"):
        return None
    if path.startswith("/c/"):
        path = "/" + path.split("/", 3)[-1]
    if not path.startswith(_API):
        return "other"
    kind = path.removeprefix(_API).replace("-", "_")
    return (
        kind if kind in ("health", "sync_data", "acknowledge", "stats", "add_capture") else "other"
    )


def _identity(request: Request, emulator: PullClientEmulator) -> ClientIdentity:
    """`/c/{client_id}/...` names the identity; the unprefixed routes are `default`'s."""
    client_id = request.path_params.get("client_id", DEFAULT_CLIENT)
    client = emulator.clients.get(client_id)
    if client is None:
        raise problem(404, "unknown client", f"no client identity {client_id!r}")
    return client


def _admit(request: Request, emulator: PullClientEmulator) -> ClientIdentity:
    """Apply the common call faults, then the identity's `down` and `fail_next` switches."""
    client = _identity(request, emulator)
    emulator.faults.admit(request, classify(request.method, request.url.path) or "other")
    faults = client.faults
    if faults.down:
        raise ApiError(503, None)  # no body, as a client behind a dead proxy
    if faults.fail_next > 0:
        faults.fail_next -= 1
        raise problem(500, "server error", "injected by the emulator (fail_next)")
    return client


def _emulator(request: Request) -> PullClientEmulator:
    return emulator_of(request, PullClientEmulator)


async def _admitted(request: Request, emulator: EmulatorDep) -> ClientIdentity:
    return _admit(request, emulator)


ClientDep = Annotated[ClientIdentity, Depends(_admitted)]


class AddCapture(BaseModel):
    """The seed's body; anything else it carries goes into the payload as is."""

    model_config = ConfigDict(extra="allow")

    action: str = Field(default="capture", pattern="^(capture|favorite|remove)$")
    user_id: str | None = Field(default=None, min_length=1, max_length=64)
    removed: bool = False


class Acknowledge(BaseModel):
    ids: list[str] = Field(max_length=100_000)


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def _paths(path: str) -> list[str]:
    return [f"/api/client{path}", f"/c/{{client_id}}/api/client{path}"]


# The three calls a pull makes take the request alone and read it themselves: FastAPI's
# dependency solving cost more CPU than the answer (this one process stands in for the
# 1,000 clients of bench/pull_sync.py, on the machine it measures).


async def health(request: Request) -> Response:
    emulator = _emulator(request)
    client = _admit(request, emulator)
    client.counters["health"] += 1
    if client.faults.slow:
        await asyncio.sleep(emulator.config.slow_seconds)
    return _json(
        {"status": "ok", "client_id": client.client_id, "user_id": client.user_id,
         "pending": len(client.pending)}
    )  # fmt: skip


def _query(request: Request) -> tuple[int | None, datetime | None]:
    """`limit` (a whole number from 1) and `since` (ISO 8601), or a 422 that says which."""
    params = request.query_params
    limit: int | None = None
    since: datetime | None = None
    if (raw := params.get("limit")) is not None:
        if not raw.isdigit() or int(raw) < 1:
            raise problem(
                422, "invalid request", f"limit must be a whole number from 1, not {raw!r}"
            )
        limit = int(raw)
    if (raw := params.get("since")) is not None:
        try:
            since = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise problem(422, "invalid request", f"since must be ISO 8601, not {raw!r}") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    return limit, since


async def sync_data(request: Request) -> Response:
    """The oldest pending records, a page at a time; a fault decides how it goes wrong."""
    emulator = _emulator(request)
    client = _admit(request, emulator)
    limit, since = _query(request)
    client.counters["sync_data"] += 1
    faults, config = client.faults, emulator.config
    if faults.slow:
        await asyncio.sleep(config.slow_seconds)
    if faults.server_error:
        raise problem(500, "server error", "sync-data failed (injected by the emulator)")
    if faults.malformed_json:
        return Response(b'{"records": [{"id": "x", ', media_type="application/json")
    size = min(limit or config.default_page_size, config.max_page_size)
    pending = client.pending_records(since)
    page = pending if faults.ignore_limit else pending[:size]
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "user_id": client.user_id,
        # Each record's JSON made once, when the record was (orjson inlines it as it is).
        "records": [orjson.Fragment(record.json_bytes) for record in page],
        "count": len(page),
        "pending": len(client.pending),
        "has_more": len(pending) > len(page),
    }
    if faults.wrong_types or faults.missing_ids:  # these rewrite the records themselves
        records = [record.as_json() for record in page]
        if faults.wrong_types:
            body["records"] = [
                {**r, "id": n, "timestamp": "yesterday", "payload": "none"}
                for n, r in enumerate(records)
            ] or [{"id": 1, "user_id": 2, "action": None, "payload": [], "timestamp": 3}]
            body["count"] = "many"
        if faults.missing_ids:
            body["records"] = [{k: v for k, v in r.items() if k != "id"} for r in records] or [
                {"user_id": client.user_id, "action": "capture", "payload": {},
                 "timestamp": "2026-01-01T00:00:00+00:00"}
            ]  # fmt: skip
    if faults.huge_body:
        body["padding"] = "x" * config.huge_bytes
    return _json(body)


async def acknowledge(request: Request) -> Response:
    """Those records are synced; `ack_*` faults make it fail, lie or invent ids."""
    emulator = _emulator(request)
    client = _admit(request, emulator)
    try:
        ids = Acknowledge.model_validate_json(await request.body()).ids
    except ValidationError as exc:
        error = exc.errors(include_input=False)[0]
        where = ".".join(str(part) for part in error.get("loc", ()))
        raise problem(422, "invalid request", f"{where or 'body'}: {error.get('msg')}") from None
    client.counters["acknowledge"] += 1
    faults = client.faults
    if faults.slow_acknowledge:
        await asyncio.sleep(emulator.config.slow_seconds)
        if await request.is_disconnected():
            client.counters["acknowledge_abandoned"] += 1
            return _json({"acknowledged": [], "unknown": []})  # nobody is listening
    if faults.ack_fails:
        raise problem(500, "server error", "acknowledge failed (injected by the emulator)")
    done, unknown = client.acknowledge(ids)
    if faults.ack_lies:
        raise problem(500, "server error", "acknowledged, then failed (injected)")
    if faults.ack_unknown_ids:
        done = [*done, f"{client.client_id}-never-sent"]
    return _json({"acknowledged": done, "unknown": unknown})


async def stats(client: ClientDep) -> Response:
    return _json(client.stats())


async def add_capture(body: AddCapture, client: ClientDep) -> Response:
    """A new pending record; `removed: true` with no action makes it a `remove`."""
    extra = dict(body.model_extra or {})
    action = "remove" if body.removed and "action" not in body.model_fields_set else body.action
    assert action in ACTIONS
    record = client.add(action, extra, user_id=body.user_id)
    return _json({"record": record.as_json(), "pending": len(client.pending)}, 201)


for _path in _paths("/health"):
    router.add_api_route(_path, health, methods=["GET"])
for _path in _paths("/sync-data"):
    router.add_api_route(_path, sync_data, methods=["GET"])
for _path in _paths("/acknowledge"):
    router.add_api_route(_path, acknowledge, methods=["POST"])
for _path in _paths("/stats"):
    router.add_api_route(_path, stats, methods=["GET"])
for _path in _paths("/add-capture"):
    router.add_api_route(_path, add_capture, methods=["POST"])
