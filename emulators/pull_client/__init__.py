"""A pull-sync client emulator (seed 004): the HTTP server a client runs so the backend can pull.

One process serves many client identities, each under `/c/{client_id}/api/client/...`; the
unprefixed `/api/client/...` routes are the identity named `default` (the seed's single client).

Client API (what the backend calls):

- `GET  .../api/client/health`: `{"status": "ok", "client_id", "user_id", "pending"}`
- `GET  .../api/client/sync-data?limit=&since=`: the oldest pending records,
  `{"client_id", "user_id", "records": [{id, user_id, action, payload, timestamp}], "count",
  "pending", "has_more"}`; `since` keeps only records stamped after it.
- `POST .../api/client/acknowledge` `{"ids": [...]}`: those records are synced (gone from
  pending): `{"acknowledged": [...], "unknown": [...]}`.
- `GET  .../api/client/stats`: pending, synced, totals, acknowledge calls.
- `POST .../api/client/add-capture`: a new pending record (the seed's body:
  `{"pokemon_id", "pokemon_name", "action", "removed"}`; `user_id` optional).

Control (`/_emulator/...`, no auth): `health`, `clients` (list, create with records, bulk
`populate`), per-client `faults` (GET/PUT/DELETE), `stats`, `reset`. Run with
`python -m emulators.pull_client`.
"""
