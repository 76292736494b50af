"""The alert activities: `alerts.evaluate` (find and record incidents, list what is owed) and
`alerts.deliver` (send one incident to one target, once).

Deliveries go through the guarded outbound fetcher: an alert URL must be public https unless its
origin is in ALERT_ALLOWED_ORIGINS. A 2xx answer is recorded in `alert_deliveries` before the
activity returns; a target that has a row is never sent that incident again. A send whose answer
was lost is retried with the same `webhook-id` (`core.alerts.messages.message_id`).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.alerts.conditions import ProbedStorage, find, probe_storage
from core.alerts.contracts import (
    ALERT_DELIVER,
    ALERT_EVALUATE,
    ERR_ALERT_REFUSED,
    AlertDeliverInput,
    AlertSweepResult,
)
from core.alerts.incidents import record
from core.alerts.messages import body, message_id
from core.models import AlertDelivery, AlertIncident, utcnow
from core.outbound import OutboundFetcher, OutboundPolicy, OutboundRefused, normalise_origin
from core.settings import Settings
from providers.standard_webhooks import sign

# Answers worth another try: the receiver is busy or down.
_RETRY_STATUSES = frozenset({408, 409, 425, 429})


def alert_fetcher(settings: Settings) -> OutboundFetcher:
    """The fetcher for alert URLs: the outbound rules, with ALERT_ALLOWED_ORIGINS as the only
    origins allowed plain http or private addresses."""
    policy = OutboundPolicy.from_settings(settings)
    return OutboundFetcher(
        OutboundPolicy(
            allowed_origins=frozenset(normalise_origin(o) for o in settings.alert_allowed_origins),
            max_redirects=0,
            connect_timeout=policy.connect_timeout,
            read_timeout=min(policy.read_timeout, 30.0),
            max_bytes=1024 * 1024,
        ),
        max_connections=10,
    )


class AlertActivities:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        storage: ProbedStorage | None,
        fetcher: OutboundFetcher,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._fetcher = fetcher
        self._settings = settings

    @activity.defn(name=ALERT_EVALUATE)
    async def evaluate(self) -> AlertSweepResult:
        """Record the incidents found now, resolve the cleared ones; return what is owed."""
        settings = self._settings
        now = utcnow()
        probed = await probe_storage(self._storage) if self._storage is not None else None
        async with self._sessions() as session, session.begin():
            findings = await find(session, settings, now)
            if probed is not None:
                findings.append(probed)
            result = await record(
                session,
                findings,
                now,
                targets=[t.target_id for t in settings.alert_webhook_urls],
                lookback=timedelta(hours=settings.alert_lookback_hours),
            )
        if result.opened or result.resolved:
            activity.logger.info(
                "alerts: %d incidents opened (%s), %d resolved",
                len(result.opened),
                ", ".join(result.opened),
                len(result.resolved),
            )
        return result

    @activity.defn(name=ALERT_DELIVER)
    async def deliver(self, request: AlertDeliverInput) -> str:
        """Send the incident to the target unless it had it; "sent", "already_sent" or
        "target_gone" (no longer configured)."""
        target = next(
            (t for t in self._settings.alert_webhook_urls if t.target_id == request.target), None
        )
        if target is None:
            return "target_gone"
        async with self._sessions() as session:
            done = await session.scalar(
                select(AlertDelivery.target).where(
                    AlertDelivery.incident_key == request.incident_key,
                    AlertDelivery.target == request.target,
                )
            )
            incident = await session.get(AlertIncident, request.incident_key)
        if done is not None:
            return "already_sent"
        if incident is None:
            raise ApplicationError(
                f"no incident {request.incident_key!r}", type=ERR_ALERT_REFUSED, non_retryable=True
            )
        now = utcnow()
        content = body(incident, target.format, now)
        msg_id = message_id(incident.key, target.target_id)
        timestamp = int(now.timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "autosync-alerts",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
        }
        if target.secret:
            headers["webhook-signature"] = sign(target.secret, msg_id, timestamp, content)
        try:
            async with self._fetcher.open(
                target.url, method="POST", content=content, headers=headers
            ) as fetched:
                status = fetched.response.status_code
        except OutboundRefused as exc:
            raise ApplicationError(
                f"alert URL refused: {exc}", type=ERR_ALERT_REFUSED, non_retryable=True
            ) from exc
        if 200 <= status < 300:
            await self._record(incident.key, target.target_id, msg_id, status)
            return "sent"
        message = f"the alert URL answered {status}"
        if status >= 500 or status in _RETRY_STATUSES:
            raise ApplicationError(message)
        raise ApplicationError(message, type=ERR_ALERT_REFUSED, non_retryable=True)

    async def _record(self, key: str, target: str, msg_id: str, status: int) -> None:
        try:
            async with self._sessions() as session, session.begin():
                session.add(
                    AlertDelivery(
                        incident_key=key, target=target, message_id=msg_id, status_code=status
                    )
                )
        except IntegrityError:
            pass  # recorded by an attempt that overlapped this one
