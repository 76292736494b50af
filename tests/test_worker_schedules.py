"""The schedules every worker makes sure of at start: created once, whoever starts first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import ScheduleOverlapPolicy, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from core.alerts.contracts import ALERT_SCHEDULE_ID
from core.contracts import PROVIDER_POLLER_WORKFLOW, provider_poller_workflow_id
from core.pull_schedules import CLEANUP_SCHEDULE_ID, CYCLE_SCHEDULE_ID, HEALTH_SCHEDULE_ID
from core.retention.contracts import RETENTION_SCHEDULE_ID
from core.settings import AlertTarget, Settings
from devstack.processes import temporal_cli_path
from providers import registry
from worker import ensure_provider_pollers, ensure_schedules
from workflows.maintenance import PRUNE_SCHEDULE_ID
from workflows.recovery import RECOVERY_SCHEDULE_ID

EVERY = [PRUNE_SCHEDULE_ID, RECOVERY_SCHEDULE_ID, CYCLE_SCHEDULE_ID, HEALTH_SCHEDULE_ID,
         CLEANUP_SCHEDULE_ID, RETENTION_SCHEDULE_ID]  # fmt: skip


@pytest.fixture
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    # The wheel's CLI: nothing is downloaded.
    cli = temporal_cli_path()
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=cli)
    try:
        yield env
    finally:
        await env.shutdown()


async def test_every_schedule_is_created_once_and_skips_overlapping_runs(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        secret_key="test-secret-key-0123456789",
    )
    client = dev_server.client
    await ensure_schedules(client, settings)
    await ensure_schedules(client, settings)  # a second worker starting: nothing changes
    for schedule_id in EVERY:  # describe raises for a schedule that doesn't exist
        described = await client.get_schedule_handle(schedule_id).describe()
        assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert described.schedule.spec.intervals, schedule_id


async def test_each_provider_gets_one_poller_whoever_starts_first(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        secret_key="test-secret-key-0123456789",
    )
    client = dev_server.client
    await ensure_provider_pollers(client, settings)
    first = {
        name: await client.get_workflow_handle(provider_poller_workflow_id(name)).describe()
        for name in registry.names()
    }
    await ensure_provider_pollers(client, settings)  # a second worker starting: the same runs
    for name, described in first.items():
        again = await client.get_workflow_handle(provider_poller_workflow_id(name)).describe()
        assert again.run_id == described.run_id, name
        assert described.workflow_type == PROVIDER_POLLER_WORKFLOW
        assert described.task_queue == settings.poller_task_queue
        assert described.status == WorkflowExecutionStatus.RUNNING


async def test_no_pollers_when_they_are_off(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        secret_key="test-secret-key-0123456789",
        provider_pollers=False,
    )
    await ensure_provider_pollers(dev_server.client, settings)
    for name in registry.names():
        handle = dev_server.client.get_workflow_handle(provider_poller_workflow_id(name))
        with pytest.raises(RPCError):
            await handle.describe()


async def test_the_alert_sweep_is_scheduled_only_with_somewhere_to_send(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    base = dict(database_url=f"sqlite:///{tmp_path / 'app.db'}", secret_key="k" * 20)
    client = dev_server.client
    await ensure_schedules(client, Settings(_env_file=None, **base))  # type: ignore[call-arg, arg-type]
    with pytest.raises(RPCError):
        await client.get_schedule_handle(ALERT_SCHEDULE_ID).describe()
    with_urls = Settings(
        _env_file=None,  # type: ignore[call-arg]
        alert_webhook_urls=[AlertTarget(url="https://hooks.example.com/a")],
        alert_interval_minutes=2,
        **base,  # type: ignore[arg-type]
    )
    await ensure_schedules(client, with_urls)
    described = await client.get_schedule_handle(ALERT_SCHEDULE_ID).describe()
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert [i.every for i in described.schedule.spec.intervals] == [timedelta(minutes=2)]
