"""Webhook ids already handed to a workflow, so a replayed webhook signals nothing.

A signature stays valid for the provider's tolerance window (minutes), so a captured webhook
can be sent again inside it; a receipt outlives that window by far and is pruned after a day.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import WebhookReceipt, utcnow

RECEIPT_RETENTION = timedelta(days=1)
_MAX_ID_LENGTH = 200  # WebhookReceipt.webhook_id


def receipt_key(webhook_id: str | None) -> str | None:
    """The stored form of a webhook id: as sent, or its digest when longer than the column."""
    if not webhook_id:
        return None
    if len(webhook_id) <= _MAX_ID_LENGTH:
        return webhook_id
    return "sha256:" + hashlib.sha256(webhook_id.encode()).hexdigest()


async def receipt_seen(session: AsyncSession, provider: str, webhook_id: str) -> bool:
    found = await session.execute(
        select(WebhookReceipt.webhook_id).where(
            WebhookReceipt.provider == provider, WebhookReceipt.webhook_id == webhook_id
        )
    )
    return found.first() is not None


async def record_receipt(
    session: AsyncSession, provider: str, webhook_id: str, job_id: str
) -> None:
    """Remember a delivered webhook id; one recorded meanwhile by a concurrent copy is fine."""
    session.add(WebhookReceipt(provider=provider, webhook_id=webhook_id, job_id=job_id))
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()


async def prune_receipts(session: AsyncSession, older_than: timedelta = RECEIPT_RETENTION) -> int:
    """Delete receipts older than `older_than`; returns how many. The caller commits."""
    result = await session.execute(
        delete(WebhookReceipt).where(WebhookReceipt.received_at < utcnow() - older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
