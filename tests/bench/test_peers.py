"""The peers of bench/peers.py run their job end to end against the emulator, so the bench
can't rot: the seeds-style poller and the DBOS workflow each store three jobs, one of them found
by a poll because the emulator drops its webhook."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import pytest

from bench.peers.main import emulator_stats, predictions_by_key, wait_settled
from bench.peers.systems import Dbos, Peer, Seeds
from bench.peers.workload import job_mix
from devstack.postgres import PostgresServer

POLL_SECONDS = 1.0


def test_every_system_gets_the_same_jobs_and_exactly_the_asked_share_of_lost_webhooks() -> None:
    jobs = job_mix("l30-burst", 20, 0.3, seed=7)
    assert jobs == job_mix("l30-burst", 20, 0.3, seed=7)
    assert sum(job.webhook_lost for job in jobs) == 6
    assert jobs[0].input()["prompt"] == "peers l30-burst-00000"
    lost = next(job for job in jobs if job.webhook_lost)
    assert lost.input()["_emulator"]["drop_webhooks"] is True


async def run_three_jobs(system: Peer) -> None:
    jobs = job_mix("t", 3, 1 / 3, seed=1)
    keys = {job.key for job in jobs}
    await system.start()
    try:
        forged = await system.http.post(
            f"{system.url}/webhooks/replicate?job_id=x", content=b'{"id": "x"}'
        )
        assert forged.status_code == 401
        for job in jobs:
            await system.submit(job)
        settled, rows = await wait_settled(system, "t", keys, within=45)
        made = await predictions_by_key(system, keys)
        stats = await emulator_stats(system)
    finally:
        await system.stop()
        await system.aclose()
    assert settled
    assert sorted(row.key for row in rows if row.status == "succeeded") == sorted(keys)
    assert {key: len(ids) for key, ids in made.items()} == dict.fromkeys(keys, 1)
    for row in rows:
        # One file each; a copy made twice (the seeds' webhook and cron racing for one row, a
        # DBOS step re-run) is what the bench counts against a peer, not a broken peer.
        assert row.files == 1 and (row.store_count or 0) >= 1
        assert (system.storage_dir / f"generated/bench/{row.job_id}_0.png").stat().st_size > 0
    # The job whose webhook the emulator dropped was found by a GET.
    assert stats["requests"]["get"] >= 1


@pytest.mark.e2e
async def test_the_seeds_cron_poller_stores_every_job(tmp_path: Path) -> None:
    await run_three_jobs(Seeds(tmp_path, POLL_SECONDS))


@pytest.mark.e2e
@pytest.mark.postgres
async def test_the_dbos_workflow_stores_every_job(
    tmp_path: Path, postgres: PostgresServer | None
) -> None:
    ci = os.environ.get("CI") or os.environ.get("AUTOSYNC_CI")
    if find_spec("dbos") is None and not ci:
        pytest.skip("dbos is not installed (the bench extra has it: `make install`)")
    if postgres is None:
        pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
    await run_three_jobs(Dbos(tmp_path, POLL_SECONDS, postgres=postgres))
