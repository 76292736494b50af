"""The sweep's activity on both databases: each condition found once, owed to every target,
and nothing new when it is found again."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.alerts import AlertActivities, alert_fetcher
from core.alerts.contracts import AlertKind
from storage.local import LocalStorage
from tests.alerts.receiver import AlertReceiver
from tests.alerts.test_alerts import make_settings, seed_incidents


async def test_each_condition_is_recorded_once_on_each_database(
    sessions_each_db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    sessions = sessions_each_db
    await seed_incidents(sessions)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with AlertReceiver() as receiver:
        settings = make_settings(receiver)
        targets = {t.target_id for t in settings.alert_webhook_urls}
        async with alert_fetcher(settings) as fetcher:
            activities = AlertActivities(
                sessions=sessions, storage=LocalStorage(blocker / "s"), fetcher=fetcher,
                settings=settings,
            )  # fmt: skip
            first = await ActivityEnvironment().run(activities.evaluate)
            second = await ActivityEnvironment().run(activities.evaluate)
    assert sorted(key.split(":")[0] for key in first.opened) == sorted(k.value for k in AlertKind)
    assert {item.incident_key for item in first.to_send} == set(first.opened)
    assert all(set(item.targets) == targets for item in first.to_send)
    assert second.opened == [] and second.resolved == []
    # Nothing was delivered yet: still owed, to the same delivery workflows.
    assert {item.incident_key for item in second.to_send} == set(first.opened)
    assert receiver.received == []
