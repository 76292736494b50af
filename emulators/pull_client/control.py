"""The pull-client emulator's own control routes (`/_emulator/...`, no auth), besides the
scaffold's common ones (health, stats, faults over every identity, reset).

Tests and benchmarks use them to create identities with records, switch an identity's faults
on and read what the backend did (acknowledged, pending).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from emulators.pull_client.api import EmulatorDep
from emulators.pull_client.faults import Faults
from emulators.pull_client.state import ClientIdentity, PullClientEmulator
from emulators.scaffold.app import problem

router = APIRouter(prefix="/_emulator")
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(pattern=_ID)
    user_id: str = Field(min_length=1, max_length=64)
    records: int = Field(default=0, ge=0, le=100_000)


class Populate(BaseModel):
    """`clients` identities `{prefix}{n}` of users `{user_prefix}{n}`, `records` each."""

    model_config = ConfigDict(extra="forbid")

    clients: int = Field(ge=1, le=100_000)
    records: int = Field(default=0, ge=0, le=10_000)
    prefix: str = Field(default="c", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    user_prefix: str = Field(default="user-", pattern=r"^[A-Za-z0-9_.-]{1,32}$")


class AddRecords(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=100_000)


def _client(emulator: PullClientEmulator, client_id: str) -> ClientIdentity:
    client = emulator.clients.get(client_id)
    if client is None:
        raise problem(404, "unknown client", f"no client identity {client_id!r}")
    return client


@router.get("/clients")
async def list_clients(emulator: EmulatorDep) -> dict[str, Any]:
    """Every identity with its counts."""
    return {"clients": [client.stats() for client in emulator.clients.values()]}


@router.post("/clients", status_code=201)
async def create_client(body: ClientCreate, emulator: EmulatorDep) -> dict[str, Any]:
    """A new identity (or the existing one) and `records` new pending captures for it."""
    client = emulator.create(body.client_id, body.user_id)
    client.add_many(body.records)
    return client.stats()


@router.post("/populate", status_code=201)
async def populate(body: Populate, emulator: EmulatorDep) -> dict[str, Any]:
    """Many identities at once, for benchmarks."""
    for n in range(body.clients):
        emulator.create(f"{body.prefix}{n}", f"{body.user_prefix}{n}").add_many(body.records)
    return emulator.totals()


@router.get("/clients/{client_id}")
async def read_client(client_id: str, emulator: EmulatorDep) -> dict[str, Any]:
    """One identity: counts, and its records with a `synced` flag."""
    client = _client(emulator, client_id)
    records = [
        {**record.as_json(), "synced": record.id not in client.pending}
        for record in client.records.values()
    ]
    return {**client.stats(), "records": records}


@router.post("/clients/{client_id}/records", status_code=201)
async def add_records(client_id: str, body: AddRecords, emulator: EmulatorDep) -> dict[str, Any]:
    """`count` new pending captures."""
    client = _client(emulator, client_id)
    added = client.add_many(body.count)
    return {**client.stats(), "ids": [record.id for record in added]}


@router.get("/clients/{client_id}/faults")
async def get_faults(client_id: str, emulator: EmulatorDep) -> Faults:
    return _client(emulator, client_id).faults


@router.put("/clients/{client_id}/faults")
async def put_faults(client_id: str, faults: Faults, emulator: EmulatorDep) -> Faults:
    """Replace the identity's faults (fields left out go back to their defaults)."""
    client = _client(emulator, client_id)
    client.faults = faults
    return client.faults


@router.delete("/clients/{client_id}/faults")
async def delete_faults(client_id: str, emulator: EmulatorDep) -> Faults:
    client = _client(emulator, client_id)
    client.faults = Faults()
    return client.faults
