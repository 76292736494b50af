"""Each alert kind fires once, to a real HTTP receiver, signed (Standard Webhooks), through the
scheduled sweep's workflow and the delivery workflows it starts (time-skipping server)."""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.alerts import AlertActivities, alert_fetcher
from core.alerts.contracts import (
    ALERT_SWEEP_WORKFLOW,
    AlertDeliverInput,
    AlertKind,
    AlertSweepResult,
    alert_delivery_workflow_id,
)
from core.contracts import JobStatus, SyncStatus
from core.models import AlertDelivery, AlertIncident, Job, SyncRun, utcnow
from core.pull_models import PullClient
from core.settings import AlertTarget, Settings
from providers.standard_webhooks import verify
from storage.local import LocalStorage
from tests.alerts.receiver import AlertReceiver
from workflows.alerts import AlertDeliveryWorkflow, AlertSweepWorkflow

SECRET = "whsec_" + base64.b64encode(b"alert-test-secret-0123456789").decode()
SLACK_SECRET = "whsec_" + base64.b64encode(b"slack-test-secret-0123456789").decode()


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    with AlertReceiver(fail_first=1) as running:  # the first send is answered 503
        yield running


def make_settings(receiver: AlertReceiver, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "alert_webhook_urls": [
            AlertTarget(url=f"{receiver.origin}/standard", secret=SECRET),
            AlertTarget(url=f"{receiver.origin}/slack", secret=SLACK_SECRET, format="slack"),
        ],
        "alert_allowed_origins": [receiver.origin],
        "alert_min_jobs": 5,
        "alert_failure_rate": 0.5,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


async def seed_incidents(sessions: async_sessionmaker[AsyncSession]) -> str:
    """One incident of each kind but storage (and near misses); returns the ids' suffix.

    Incident keys name their run or client, and delivery workflow ids name the incident: the
    suffix keeps tests sharing the Temporal server from meeting each other's workflows.
    """
    tag = uuid.uuid4().hex[:8]
    now = utcnow()
    async with sessions() as session, session.begin():
        for n in range(5):  # 4 of 5 replicate jobs failed in the window
            session.add(
                Job(
                    id=f"rate{n}", user_id="alice", kind="generation", provider="replicate",
                    model="m", status=(JobStatus.FAILED if n else JobStatus.SUCCEEDED).value,
                    created_at=now - timedelta(minutes=3), completed_at=now - timedelta(minutes=1),
                )
            )  # fmt: skip
        for n in range(3):  # 3 of 3 fal jobs failed: fewer than ALERT_MIN_JOBS, no incident
            session.add(
                Job(
                    id=f"few{n}", user_id="alice", kind="generation", provider="fal",
                    model="m", status=JobStatus.FAILED.value,
                    created_at=now - timedelta(minutes=3), completed_at=now - timedelta(minutes=1),
                )
            )  # fmt: skip
        session.add(  # past the 30-minute deadline of generations
            Job(
                id="stuck1", user_id="bob", kind="generation", provider="replicate", model="m",
                status=JobStatus.PROCESSING.value, created_at=now - timedelta(hours=2),
            )
        )  # fmt: skip
        session.add(  # recent and unfinished: not stuck
            Job(
                id="young", user_id="bob", kind="video", provider="replicate", model="m",
                status=JobStatus.PROCESSING.value, created_at=now - timedelta(minutes=20),
            )
        )  # fmt: skip
        session.add(
            SyncRun(
                id=f"run-failed-{tag}", company_id="acme", mode="incremental", status="FAILED",
                error_message="upstream said 500", created_at=now - timedelta(minutes=30),
                started_at=now - timedelta(minutes=30), finished_at=now - timedelta(minutes=5),
            )
        )  # fmt: skip
        session.add(
            SyncRun(
                id=f"run-long-{tag}", company_id="globex", mode="full",
                status=SyncStatus.RUNNING.value, created_at=now - timedelta(hours=5),
                started_at=now - timedelta(hours=5),
            )
        )  # fmt: skip
        session.add(
            SyncRun(
                id=f"run-old-failure-{tag}", company_id="acme", mode="full", status="FAILED",
                created_at=now - timedelta(days=3), finished_at=now - timedelta(days=3),
            )
        )  # fmt: skip
        session.add(
            PullClient(
                id=f"client-{tag}", url="http://127.0.0.1:9/x", user_id="alice", active=False,
                consecutive_failures=5, last_error="connection refused",
                inactive_since=now - timedelta(minutes=2),
            )
        )  # fmt: skip
    return tag


@dataclass
class Running:
    client: Client
    task_queue: str
    activities: AlertActivities


@pytest.fixture
async def running(
    env: WorkflowEnvironment,
    sessions: async_sessionmaker[AsyncSession],
    receiver: AlertReceiver,
    tmp_path: Path,
) -> AsyncIterator[Running]:
    settings = make_settings(receiver)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the storage folder should be")
    storage = LocalStorage(blocker / "store")  # every write fails: a storage error
    task_queue = f"alerts-{uuid.uuid4().hex}"
    async with alert_fetcher(settings) as fetcher:
        activities = AlertActivities(
            sessions=sessions, storage=storage, fetcher=fetcher, settings=settings
        )
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[AlertSweepWorkflow, AlertDeliveryWorkflow],
            activities=[activities.evaluate, activities.deliver],
        ):
            yield Running(env.client, task_queue, activities)


async def sweep(running: Running) -> AlertSweepResult:
    result: AlertSweepResult = await running.client.execute_workflow(
        ALERT_SWEEP_WORKFLOW,
        id=f"sweep-{uuid.uuid4().hex}",
        task_queue=running.task_queue,
        result_type=AlertSweepResult,
    )
    for item in result.to_send:  # the deliveries it started (or that ran before)
        await running.client.get_workflow_handle(
            alert_delivery_workflow_id(item.incident_key)
        ).result()
    return result


async def test_each_alert_kind_fires_once_signed(
    running: Running, sessions: async_sessionmaker[AsyncSession], receiver: AlertReceiver
) -> None:
    tag = await seed_incidents(sessions)
    first = await sweep(running)
    kinds = Counter(key.split(":", 1)[0] for key in first.opened)
    assert kinds == {kind.value: 1 for kind in AlertKind}
    assert sum(1 for r in receiver.received if r.status == 503) == 1  # retried, then accepted

    standard = receiver.accepted("/standard")
    slack = receiver.accepted("/slack")
    assert len(standard) == len(slack) == len(AlertKind)
    assert sorted(r.json()["data"]["kind"] for r in standard) == sorted(k.value for k in AlertKind)
    for r in standard:
        assert verify(SECRET, r.headers, r.body) == r.headers["webhook-id"]
        assert r.json()["type"] == "alert.opened"
    for r in slack:
        assert verify(SLACK_SECRET, r.headers, r.body)
        assert r.json()["text"] and r.json()["blocks"][0]["type"] == "section"
    with pytest.raises(Exception, match="no webhook-signature matches"):
        verify(SLACK_SECRET, standard[0].headers, standard[0].body)
    # The retried send carried the same webhook-id as the one accepted after it.
    retried = next(r for r in receiver.received if r.status == 503)
    assert [r for r in receiver.accepted(retried.path)
            if r.headers["webhook-id"] == retried.headers["webhook-id"]]  # fmt: skip
    by_kind = {r.json()["data"]["kind"]: r.json()["data"] for r in standard}
    assert by_kind["failure_rate"]["subject"] == "replicate"
    assert by_kind["failure_rate"]["detail"]["failed"] == 4
    assert by_kind["stuck_jobs"]["detail"]["count"] == 1
    assert by_kind["sync_failed"]["detail"]["run_id"] == f"run-failed-{tag}"
    assert by_kind["sync_overrun"]["detail"]["run_id"] == f"run-long-{tag}"
    assert by_kind["pull_client_inactive"]["detail"]["client_id"] == f"client-{tag}"
    assert by_kind["storage_error"]["subject"] == "local"

    # The next sweeps find the same conditions: nothing is sent again.
    before = len(receiver.received)
    second = await sweep(running)
    await sweep(running)
    assert second.opened == [] and second.to_send == []
    assert len(receiver.received) == before
    async with sessions() as session:
        deliveries = (await session.execute(select(AlertDelivery))).scalars().all()
    assert len(deliveries) == 2 * len(AlertKind)


async def test_a_condition_that_clears_and_returns_is_a_new_incident(
    running: Running, sessions: async_sessionmaker[AsyncSession], receiver: AlertReceiver
) -> None:
    await seed_incidents(sessions)
    await sweep(running)
    async with sessions() as session, session.begin():
        for job in (await session.execute(select(Job).where(Job.id.like("rate%")))).scalars():
            job.status = JobStatus.SUCCEEDED.value  # the failure rate is gone
    cleared = await sweep(running)
    assert [key.split(":")[0] for key in cleared.resolved] == ["failure_rate"]
    async with sessions() as session, session.begin():
        for job in (await session.execute(select(Job).where(Job.id.like("rate%")))).scalars():
            job.status = JobStatus.FAILED.value  # and back
    back = await sweep(running)
    assert [key.split(":")[0] for key in back.opened] == ["failure_rate"]
    async with sessions() as session:
        incidents = (
            (
                await session.execute(
                    select(AlertIncident).where(AlertIncident.kind == "failure_rate")
                )
            )
            .scalars()
            .all()
        )
    assert len(incidents) == 2 and sum(i.resolved_at is None for i in incidents) == 1
    rate_alerts = [
        r for r in receiver.accepted("/standard") if r.json()["data"]["kind"] == "failure_rate"
    ]
    assert len(rate_alerts) == 2


async def test_a_delivery_recorded_is_not_sent_again(
    running: Running, sessions: async_sessionmaker[AsyncSession], receiver: AlertReceiver
) -> None:
    await seed_incidents(sessions)
    result = await sweep(running)
    key = result.opened[0]
    target = make_settings(receiver).alert_webhook_urls[0].target_id
    before = len(receiver.received)
    again = await running.activities.deliver(AlertDeliverInput(incident_key=key, target=target))
    assert again == "already_sent" and len(receiver.received) == before


async def test_an_alert_url_outside_the_outbound_rules_is_refused(
    sessions: async_sessionmaker[AsyncSession], receiver: AlertReceiver
) -> None:
    settings = make_settings(receiver, alert_allowed_origins=[])  # loopback http: not allowed
    async with sessions() as session, session.begin():
        session.add(AlertIncident(key="k1", kind="storage_error", subject="local", summary="s"))
    async with alert_fetcher(settings) as fetcher:
        activities = AlertActivities(
            sessions=sessions, storage=None, fetcher=fetcher, settings=settings
        )
        target = settings.alert_webhook_urls[0].target_id
        with pytest.raises(ApplicationError, match="alert URL refused") as refused:
            await activities.deliver(AlertDeliverInput(incident_key="k1", target=target))
    assert refused.value.non_retryable
    assert receiver.received == []


async def test_a_target_that_refuses_is_not_sent_the_incident_again(
    env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    with AlertReceiver(refuse=frozenset({"/refuse"})) as receiver:
        settings = make_settings(
            receiver,
            alert_webhook_urls=[
                AlertTarget(url=f"{receiver.origin}/standard", secret=SECRET),
                AlertTarget(url=f"{receiver.origin}/refuse", secret=SECRET),
            ],
        )
        async with sessions() as session, session.begin():
            session.add(
                SyncRun(
                    id=f"run-{uuid.uuid4().hex}", company_id="acme", mode="full", status="FAILED",
                    created_at=utcnow(), finished_at=utcnow(),
                )
            )  # fmt: skip
        task_queue = f"alerts-{uuid.uuid4().hex}"
        async with alert_fetcher(settings) as fetcher:
            activities = AlertActivities(
                sessions=sessions, storage=None, fetcher=fetcher, settings=settings
            )
            async with Worker(
                env.client,
                task_queue=task_queue,
                workflows=[AlertSweepWorkflow, AlertDeliveryWorkflow],
                activities=[activities.evaluate, activities.deliver],
            ):
                running = Running(env.client, task_queue, activities)
                first = await sweep(running)
                (key,) = first.opened
                outcome = await env.client.get_workflow_handle(
                    alert_delivery_workflow_id(key)
                ).result()
                refused_target = settings.alert_webhook_urls[1].target_id
                assert outcome[refused_target].startswith("failed: the alert URL answered 400")
                # Still owed to the refusing URL, but its delivery workflow ran: not started again.
                second = await sweep(running)
                assert [item.targets for item in second.to_send] == [[refused_target]]
    assert sorted(r.path for r in receiver.received) == ["/refuse", "/standard"]
