"""The hourly prune: old events, webhook receipts past a day, idempotency keys past their TTL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.maintenance import MaintenanceActivities
from core.models import IdempotencyKey, WebhookReceipt, utcnow
from core.webhook_receipts import receipt_key, receipt_seen, record_receipt


async def test_a_receipt_is_recorded_once_and_seen(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        assert not await receipt_seen(session, "fal", "req-1")
        await record_receipt(session, "fal", "req-1", "job1")
        await record_receipt(session, "fal", "req-1", "job1")  # a concurrent copy: no error
        assert await receipt_seen(session, "fal", "req-1")
        assert not await receipt_seen(session, "kie", "req-1")
    long_id = "x" * 500
    key = receipt_key(long_id)
    assert key is not None and len(key) <= 200 and key == receipt_key(long_id)
    assert receipt_key(None) is None and receipt_key("") is None


async def test_prune_drops_old_receipts_and_expired_idempotency_keys(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = utcnow()
    async with sessions() as session, session.begin():
        for webhook_id, age in (("old", timedelta(days=2)), ("new", timedelta(minutes=5))):
            session.add(
                WebhookReceipt(
                    provider="fal", webhook_id=webhook_id, job_id="j", received_at=now - age
                )
            )
        for key, age in (("old", timedelta(hours=30)), ("new", timedelta(hours=1))):
            session.add(
                IdempotencyKey(
                    user_id="alice",
                    scope="jobs",
                    key=key,
                    request_hash="0" * 64,
                    resource_id="j",
                    created_at=now - age,
                )
            )
    pruned = await MaintenanceActivities(sessions=sessions, idempotency_ttl_hours=24).prune_events(
        168
    )
    assert pruned == 2
    async with sessions() as session:
        receipts = (await session.execute(select(WebhookReceipt.webhook_id))).scalars().all()
        keys = (await session.execute(select(IdempotencyKey.key))).scalars().all()
    assert list(receipts) == ["new"] and list(keys) == ["new"]
