"""Request and response models of the jobs API: what comes in and what goes out differ."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.contracts import JobKind, JobStatus, ProviderPhase
from providers import registry

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


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
    project_id: str | None = Field(None, pattern=_ID)
    node_id: str | None = Field(None, pattern=_ID)

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
    webhook_count: int
    poll_count: int
    created_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    workflow_id: str
    workflow_url: str | None = Field(description="this job in the Temporal web UI")


class JobsPublic(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next (older) page")


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("canceled by user", max_length=500)
