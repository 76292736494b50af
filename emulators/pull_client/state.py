"""Client identities: their records (pending until acknowledged), faults and counters."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from emulators.pull_client.config import PullClientEmulatorConfig
from emulators.pull_client.faults import ClientCalls, Faults
from emulators.scaffold.emulator import EmulatorBase

DEFAULT_CLIENT = "default"
ACTIONS = ("capture", "favorite", "remove")
REQUEST_KINDS = ("health", "sync_data", "acknowledge", "stats", "add_capture", "other")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Record:
    id: str
    user_id: str
    action: str
    payload: dict[str, Any]
    timestamp: datetime
    json_bytes: bytes = field(init=False, repr=False, compare=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "action": self.action,
            "payload": self.payload,
            "timestamp": self.timestamp.isoformat(timespec="microseconds"),
        }

    def __post_init__(self) -> None:
        # Serialized when the record is made, as a client keeps what it will send: the pull
        # then costs this process (which stands in for many machines) only a join.
        self.json_bytes = orjson.dumps(self.as_json())


@dataclass
class ClientIdentity:
    client_id: str
    user_id: str
    records: dict[str, Record] = field(default_factory=dict)  # every record, by id
    pending: dict[str, None] = field(default_factory=dict)  # ids not yet acknowledged, in order
    faults: Faults = field(default_factory=Faults)
    counters: Counter[str] = field(default_factory=Counter)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _last_stamp: datetime | None = None

    def add(self, action: str, payload: dict[str, Any], user_id: str | None = None) -> Record:
        """A new pending record, stamped now (strictly after the previous one)."""
        stamp = now()
        if self._last_stamp is not None and stamp <= self._last_stamp:
            stamp = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = stamp
        record = Record(
            id=f"{self.client_id}-{next(self._seq):06d}",
            user_id=user_id or self.user_id,
            action=action,
            payload=payload,
            timestamp=stamp,
        )
        self.records[record.id] = record
        self.pending[record.id] = None
        return record

    def add_many(self, count: int) -> list[Record]:
        """`count` captures of numbered items, as a benchmark or `make up` seeds them."""
        start = len(self.records)
        return [
            self.add(
                "capture", {"pokemon_id": start + n + 1, "pokemon_name": f"item-{start + n + 1}"}
            )
            for n in range(count)
        ]

    def pending_records(self, since: datetime | None = None) -> list[Record]:
        found = (self.records[i] for i in self.pending)
        return [r for r in found if since is None or r.timestamp > since]

    def acknowledge(self, ids: list[str]) -> tuple[list[str], list[str]]:
        """Mark these synced; returns (acknowledged, unknown) ids."""
        done: list[str] = []
        unknown: list[str] = []
        for record_id in ids:
            if record_id in self.records:
                self.pending.pop(record_id, None)
                done.append(record_id)
            else:
                unknown.append(record_id)
        self.counters["acknowledged_records"] += len(done)
        return done, unknown

    def stats(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "user_id": self.user_id,
            "total": len(self.records),
            "pending": len(self.pending),
            "synced": len(self.records) - len(self.pending),
            "requests": dict(sorted(self.counters.items())),
        }


class PullClientEmulator(EmulatorBase[PullClientEmulatorConfig, ClientCalls]):
    def __init__(self, config: PullClientEmulatorConfig) -> None:
        super().__init__(config, ClientCalls, request_kinds=REQUEST_KINDS)
        self.clients: dict[str, ClientIdentity] = {}
        self.forget()

    def forget(self) -> None:
        """Only the `default` identity, with its seed records and no faults."""
        self.clients = {}
        default = self.create(DEFAULT_CLIENT, self.config.default_user_id)
        default.add_many(self.config.seed_records)

    def create(self, client_id: str, user_id: str) -> ClientIdentity:
        """A new identity, or the existing one (its user unchanged)."""
        client = self.clients.get(client_id)
        if client is None:
            client = self.clients[client_id] = ClientIdentity(client_id, user_id)
        return client

    def totals(self) -> dict[str, Any]:
        counters: Counter[str] = Counter()
        for client in self.clients.values():
            counters.update(client.counters)
        return {
            "clients": len(self.clients),
            "records": sum(len(c.records) for c in self.clients.values()),
            "pending": sum(len(c.pending) for c in self.clients.values()),
            "requests": dict(sorted(counters.items())),
        }

    def stats_extra(self) -> dict[str, Any]:
        """Identities, records and pending records, and each identity's routes called."""
        totals = self.totals()
        totals["client_requests"] = totals.pop("requests")
        return totals
