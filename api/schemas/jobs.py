"""Request and response models of the jobs API (adoption's too), and a job row made public."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.contracts import (
    PRIORITY_BATCH,
    PRIORITY_DEFAULT,
    PRIORITY_INTERACTIVE,
    JobKind,
    JobStatus,
    ProviderPhase,
    media_job_workflow_id,
)
from core.ids import NAME_ID_PATTERN
from core.jobs.start import DEADLINE_KEY, PRIORITY_KEY
from core.links import output_link, workflow_url
from core.models import Job
from core.settings import Settings
from providers import registry


class JobCreate(BaseModel):
    """A new job. `input` goes to the model as is; `provider` and `model` have defaults.

    What the input and model must look like depends on the provider, known once its default is
    applied: `api.routes.jobs` checks them (`providers.registry.job_request_error`).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "generation", "input": {"prompt": "a red fox in the snow"}},
                {"kind": "generation", "provider": "fal", "input": {"prompt": "a red fox"}},
            ]
        },
    )

    kind: JobKind
    input: dict[str, Any] = Field(description="model input, e.g. {'prompt': '…'}")
    provider: str | None = Field(
        None,
        description="a provider's name (GET /v1/me lists them, e.g. replicate, fal, kie); "
        "default: DEFAULT_PROVIDER",
    )
    model: str | None = Field(
        None,
        description=(
            "the provider's model: Replicate 'owner/name[:version]', fal 'fal-ai/flux/dev', "
            "KIE 'google/nano-banana'; default per provider and kind"
        ),
        max_length=256,
    )
    project_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    node_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    priority: int = Field(
        PRIORITY_DEFAULT,
        ge=PRIORITY_INTERACTIVE,
        le=PRIORITY_BATCH,
        description="0 interactive, 1 default, 2 batch: a lower number is sent to the provider "
        "first; within a priority, users take turns",
    )
    deadline_seconds: float | None = Field(
        None,
        gt=0,
        le=7 * 24 * 3600,
        description="past this many seconds the job is cancelled at the provider and ends "
        "`canceled` (error 'deadline exceeded'); default: DEFAULT_DEADLINE_SECONDS_BY_KIND",
    )

    @model_validator(mode="after")
    def _check(self) -> JobCreate:
        if self.provider is not None and self.provider not in registry.specs():
            raise ValueError(registry.unsupported(self.provider))
        return self


class OutputPublic(BaseModel):
    index: int
    url: str = Field(
        description="the stored file's link: its `?token=` opens this one file until it expires"
        " (LINK_TTL_SECONDS; read the job again for a fresh one); without the token it takes the"
        " job's auth. On S3 it redirects to a presigned URL"
    )
    thumbnail_url: str | None = Field(
        description="a signed link to a WebP thumbnail (images only; null for videos or when"
        " none could be made)"
    )
    key: str = Field(description="storage key: {context}/{user_id}/{job_id}_{n}.{ext}")
    thumbnail_key: str | None = None
    content_type: str = Field(description="from the file's bytes, not its URL")
    bytes: int
    sha256: str
    width: int | None = Field(None, description="images: width as displayed, in pixels")
    height: int | None = None
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="e.g. thumbnail_error: why an image has no thumbnail"
    )


class JobPublic(BaseModel):
    id: str
    kind: JobKind
    status: JobStatus
    user_id: str
    provider: str
    provider_status: str | None = Field(description="the provider's own word for the job's state")
    provider_phase: ProviderPhase | None = Field(
        None, description="provider_status normalised (null on jobs recorded before it)"
    )
    provider_job_id: str | None
    model: str
    input: dict[str, Any]
    project_id: str | None
    node_id: str | None
    error: str | None
    outputs: list[OutputPublic]
    output_data: dict[str, Any]
    storage_provider: str | None
    storage_bucket: str | None
    storage_context: str | None
    storage_keys: list[str] = Field(default_factory=list, description="outputs, then thumbnails")
    operation_type: str | None = None
    recovery_state: str | None = Field(
        None, description="set by recovery: `recovered`, or `needs_regeneration` (see reason)"
    )
    recovery_reason: str | None = None
    rerun_of: str | None = Field(
        None, description="a rerun: the job it repeats (POST /v1/jobs/{id}/rerun); else null"
    )
    webhook_count: int
    poll_count: int
    cost_usd: float | None = Field(
        None,
        description="what the job cost (USD): the provider's own accounting priced by "
        "PROVIDER_PRICES, known once it succeeded; null when unknown",
    )
    cost_source: str | None = Field(
        None, description="the accounting it came from, e.g. `replicate:metrics.predict_time`"
    )
    cost_detail: dict[str, Any] | None = Field(
        None, description="the figures: the provider's quantity, the unit price, the hardware"
    )
    created_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    expired_at: datetime | None = Field(
        None,
        description="status `expired`: when its stored outputs were deleted after "
        "OUTPUT_RETENTION_DAYS (their links then answer 410)",
    )
    workflow_id: str
    workflow_url: str | None = Field(description="this job in the Temporal web UI")
    priority: int = Field(PRIORITY_DEFAULT, description="0 interactive … 2 batch")
    deadline_seconds: float | None = None
    queue_position: int | None = Field(
        None,
        description="while `queued` for its provider: 1 is sent next (GET /v1/jobs/{id} only)",
    )


class JobsPublic(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next (older) page")


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("canceled by user", max_length=500)


class RerunRequest(BaseModel):
    """A rerun of a job: its input, with the fields given here replaced (null removes one)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{}, {"input": {"prompt": "a red fox, at night"}}]},
    )

    input: dict[str, Any] | None = Field(
        None, description="fields of the old job's input to replace; checked as a new job's"
    )


class RerunKeyed(BaseModel):
    """What an Idempotency-Key of a rerun stands for: the job and the edit."""

    job_id: str
    input: dict[str, Any] | None = None


class AdoptRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"provider": "replicate", "provider_job_id": "abc123"}]},
    )

    provider: str = Field(description="a provider's name (GET /v1/me lists them)")
    # Never dots alone: the id becomes a URL path segment at the provider.
    provider_job_id: str = Field(
        min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]*[A-Za-z0-9_:-][A-Za-z0-9._:-]*$"
    )
    kind: JobKind | None = Field(
        None, description="left out: from the prompt's legacy prefix ([EDITED], [UPSCALED], "
        "[VIDEO]), else generation",
    )  # fmt: skip
    model: str | None = Field(
        None,
        max_length=256,
        description="needed for fal (its URLs); checked like a job's (Replicate "
        "'owner/name[:version]')",
    )
    prompt: str | None = Field(None, max_length=10_000)
    project_id: str | None = None
    node_id: str | None = None


def job_public(job: Job, settings: Settings) -> JobPublic:
    workflow_id = media_job_workflow_id(job.id)
    return JobPublic(
        id=job.id,
        kind=JobKind(job.kind),
        status=JobStatus(job.status),
        user_id=job.user_id,
        provider=job.provider,
        provider_status=job.provider_status,
        provider_phase=ProviderPhase(job.provider_phase) if job.provider_phase else None,
        provider_job_id=job.provider_job_id,
        model=job.model,
        input=job.input,
        project_id=job.project_id,
        node_id=job.node_id,
        error=job.error,
        outputs=[output_public(job.id, o, settings) for o in job.outputs],
        output_data=job.output_data,
        storage_provider=job.storage_provider,
        storage_bucket=job.storage_bucket,
        storage_context=job.storage_context,
        storage_keys=job.storage_keys or [],
        operation_type=job.operation_type,
        recovery_state=job.recovery_state,
        recovery_reason=job.recovery_reason,
        rerun_of=job.rerun_of,
        webhook_count=job.webhook_count,
        poll_count=job.poll_count,
        cost_usd=job.cost_usd,
        cost_source=job.cost_source,
        cost_detail=job.cost_detail,
        created_at=job.created_at,
        submitted_at=job.submitted_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        updated_at=job.updated_at,
        expired_at=job.expired_at,
        workflow_id=workflow_id,
        workflow_url=workflow_url(settings, workflow_id),
        priority=int((job.metadata_ or {}).get(PRIORITY_KEY, PRIORITY_DEFAULT)),
        deadline_seconds=(job.metadata_ or {}).get(DEADLINE_KEY),
        queue_position=None,
    )


def output_public(job_id: str, output: dict[str, Any], settings: Settings) -> OutputPublic:
    """One stored output, with signed links; records written before thumbnails existed lack
    the newer fields."""
    thumbnail = output.get("thumbnail")

    def link(thumbnail: bool) -> str:
        return output_link(
            settings.public_base_url,
            settings.signing_secret(),
            job_id,
            output["index"],
            ttl_seconds=settings.link_ttl_seconds,
            thumbnail=thumbnail,
        )

    return OutputPublic(
        index=output["index"],
        url=link(False),
        thumbnail_url=link(True) if thumbnail else None,
        key=output["key"],
        thumbnail_key=thumbnail["key"] if thumbnail else None,
        content_type=output["content_type"],
        bytes=output["bytes"],
        sha256=output["sha256"],
        width=output.get("width"),
        height=output.get("height"),
        metadata=output.get("metadata") or {},
    )
