"""Webhook-to-signal bridge: verify, signal the job's workflow, and only then answer 2xx.

A provider retries what we did not acknowledge, so every failure to hand the event to Temporal
answers 5xx, and so does a webhook the verifier can't check yet (KIE's, when the re-read of the
task fails); a bad URL token or signature answers 401 and signals nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from api.deps import MetricsDep, SessionDep, SettingsDep, TemporalDep, WebhookVerifiersDep
from core.contracts import (
    MEDIA_JOB_WORKFLOW,
    PROVIDER_EVENT_SIGNAL,
    TERMINAL_JOB_STATUSES,
    JobStatus,
    ProviderEvent,
    media_job_workflow_id,
)
from core.ids import valid_job_id
from core.jobs.store import get_job
from core.tokens import webhook_token_valid
from core.webhook_receipts import receipt_key, receipt_seen, record_receipt
from providers.base import WebhookRejected, WebhookUnavailable

log = logging.getLogger("autosync.webhooks")
router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _loggable(value: str | None) -> str:
    """An untrusted value made safe for one log line: escaped (no CR, LF or ANSI) and short."""
    return ascii(value if value is None else value[:64])


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
    return bytes(body)


@router.post("/{provider}")
async def receive_webhook(
    provider: str,
    request: Request,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    verifiers: WebhookVerifiersDep,
    metrics: MetricsDep,
    job_id: str | None = None,
    token: str | None = None,
) -> dict[str, str]:
    """A provider's webhook for one job: the URL we handed the provider names it and its token.

    Checked in order, the cheap ones first: the job id's form, the URL's token (no database or
    provider call before it), the job (known, this provider's, not finished), then the
    provider's signature. An event for another provider job than the job's own, and a replay
    of a webhook id already handed over, are acknowledged (200) but signal nothing: retrying
    them would never help, so a provider must not be told to.
    """
    verifier = verifiers.get(provider)
    if verifier is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no webhooks for this provider")
    metrics.webhooks_received.labels(provider).inc()
    if not valid_job_id(job_id):
        log.warning("%s webhook for a malformed job id %s", provider, _loggable(job_id))
        raise HTTPException(status.HTTP_404_NOT_FOUND, "webhook URL has no valid job_id")
    assert job_id is not None
    if not webhook_token_valid(settings.signing_secret(), job_id, token):
        metrics.webhooks_rejected.labels(provider).inc()
        log.warning("%s webhook for job %s without a valid URL token", provider, job_id)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "webhook URL token missing or wrong")
    body = await read_limited(request, settings.webhook_max_body_bytes)

    job = await get_job(session, job_id)
    if job is None or job.provider != provider:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "job not found")
    if JobStatus(job.status) in TERMINAL_JOB_STATUSES:
        # Before the verifier: KIE's costs a recordInfo call, wasted on a finished job.
        return {"status": "ignored", "reason": f"job already {job.status}"}

    try:
        webhook_id = await verifier.verify(request.headers, body)
        snapshot = verifier.parse(body)
    except WebhookRejected as exc:
        metrics.webhooks_rejected.labels(provider).inc()
        log.warning("rejected %s webhook for job %s: %s", provider, job_id, exc)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"webhook rejected: {exc}") from exc
    except WebhookUnavailable as exc:
        log.warning("deferred %s webhook for job %s: %s", provider, job_id, exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"cannot check the webhook now: {exc}"
        ) from exc
    metrics.webhooks_verified.labels(provider).inc()

    if job.provider_job_id and snapshot.provider_job_id != job.provider_job_id:
        # Genuinely signed by the provider, but about someone else's job (fal signs every
        # customer's webhooks with one key): an attack or a misrouting, not a failed delivery.
        log.warning(
            "ignored %s webhook for job %s: it is about provider job %s, not %s",
            provider,
            job_id,
            _loggable(snapshot.provider_job_id),
            job.provider_job_id,
        )
        return {"status": "ignored", "reason": "event is for another provider job"}
    receipt_id = receipt_key(webhook_id)
    if receipt_id is not None and await receipt_seen(session, provider, receipt_id):
        return {"status": "duplicate"}

    event = ProviderEvent(
        snapshot=snapshot, webhook_id=webhook_id, received_at=datetime.now(UTC).isoformat()
    )
    handle = temporal.get_workflow_handle(media_job_workflow_id(job_id))
    try:
        await handle.signal(PROVIDER_EVENT_SIGNAL, event)
    except RPCError as exc:
        metrics.signal(MEDIA_JOB_WORKFLOW, PROVIDER_EVENT_SIGNAL, sent=False)
        if exc.status == RPCStatusCode.NOT_FOUND and await _closed(handle):
            return {"status": "ignored", "reason": "job already finished"}
        log.error("could not signal job %s: %s", job_id, exc.message)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "could not deliver the event; retry later"
        ) from exc
    metrics.signal(MEDIA_JOB_WORKFLOW, PROVIDER_EVENT_SIGNAL, sent=True)
    if receipt_id is not None:
        # Recorded only once Temporal took the event, so a failed hand-over is retried.
        await record_receipt(session, provider, receipt_id, job_id)
    return {"status": "accepted"}


async def _closed(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether the workflow exists and has finished (a late webhook), as opposed to unknown."""
    try:
        description = await handle.describe()
    except RPCError:
        return False
    return bool(
        description.raw_description.workflow_execution_info.status
        != WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
    )
