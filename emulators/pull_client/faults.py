"""Fault switches: the common ones for every identity (`PUT /_emulator/faults`, see
`scaffold.faults`) and each identity's own (`PUT /_emulator/clients/{id}/faults`).

Each hits the client API only (`/api/client/...`); the control routes always answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from emulators.scaffold.faults import CallFaults

# The calls the common switches can hit (kinds of `classify` in `api.py`).
FaultTarget = Literal["health", "sync_data", "acknowledge", "stats", "add_capture"]
_CLIENT_CALLS: list[FaultTarget] = ["health", "sync_data", "acknowledge", "stats", "add_capture"]


class ClientCalls(CallFaults):
    """The common call switches, over every identity's client API calls."""

    errors_on: list[FaultTarget] = Field(default_factory=lambda: _CLIENT_CALLS.copy())


class Faults(BaseModel):
    """One identity's switches. Defaults mean "behave like a healthy client"."""

    model_config = ConfigDict(extra="forbid")

    # Every client route answers 503 with no body, as a client behind a dead proxy.
    down: bool = False
    # sync-data (and health) hold their answer `slow_seconds` (past the backend's timeout).
    slow: bool = False
    # sync-data answers 500.
    server_error: bool = False
    # sync-data answers 200 with a body that is not JSON.
    malformed_json: bool = False
    # sync-data answers JSON of the wrong shape (ids as numbers, records as a string ...).
    wrong_types: bool = False
    # sync-data answers records without an `id`.
    missing_ids: bool = False
    # sync-data answers a body of `huge_bytes` (a string field padded out).
    huge_body: bool = False
    # sync-data ignores `limit` and answers every pending record (or this many copies).
    ignore_limit: bool = False
    # acknowledge holds the request `slow_seconds` before reading it; a caller that has gone
    # meanwhile (a worker killed mid-pull) acknowledged nothing.
    slow_acknowledge: bool = False
    # acknowledge answers 500 and marks nothing synced.
    ack_fails: bool = False
    # acknowledge marks the records synced, then answers 500 anyway.
    ack_lies: bool = False
    # acknowledge answers with ids it was never sent among the acknowledged.
    ack_unknown_ids: bool = False
    # The next N client API requests fail with 500 (then the switch is spent).
    fail_next: int = Field(default=0, ge=0)
