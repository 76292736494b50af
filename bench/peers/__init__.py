"""The peers of `bench/peers.py`: the same media job built the seeds' way and on DBOS Transact.

Bench-only code: nothing outside `bench/` and `tests/bench/` may import it. Each peer is one
process serving a small HTTP API (`POST /api/generate`, `POST /webhooks/replicate`) and talks to
the Replicate emulator over HTTP only, as it would to Replicate.
"""
