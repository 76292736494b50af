"""Request and response models of the jobs API: what comes in and what goes out differ."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.contracts import JobKind, JobStatus
from providers.registry import PROVIDER_NAMES
from providers.replicate import model_reference_error

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_DESTINATION = re.compile(r"^[\w.-]+/[\w.-]+$")

# Inputs each kind cannot do without (names as the default models use them).
REQUIRED_INPUT: dict[JobKind, list[tuple[str, ...]]] = {
    JobKind.GENERATION: [("prompt",)],
    JobKind.EDIT: [("prompt",), ("input_image", "image")],
    JobKind.UPSCALE: [("image", "input_image")],
    JobKind.VIDEO: [("prompt",)],
    JobKind.TRAINING: [("destination",)],
}


class JobCreate(BaseModel):
    """A new job. `input` goes to the model as is; `model` defaults per kind."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"kind": "generation", "input": {"prompt": "a red fox in the snow"}}]
        },
    )

    kind: JobKind
    input: dict[str, Any] = Field(description="model input, e.g. {'prompt': '…'}")
    provider: str = Field("replicate", description=f"one of: {', '.join(PROVIDER_NAMES)}")
    model: str | None = Field(
        None,
        description="'owner/name', 'owner/name:<version>' or a version id; default per kind",
        max_length=256,
    )
    project_id: str | None = Field(None, pattern=_ID)
    node_id: str | None = Field(None, pattern=_ID)

    @model_validator(mode="after")
    def _check(self) -> JobCreate:
        if self.provider not in PROVIDER_NAMES:
            raise ValueError(
                f"provider {self.provider!r} is not supported; use one of: "
                + ", ".join(PROVIDER_NAMES)
            )
        for names in REQUIRED_INPUT[self.kind]:
            values = [self.input.get(name) for name in names]
            if not any(isinstance(v, str) and v.strip() for v in values):
                raise ValueError(
                    f"{self.kind.value} jobs need input.{' or input.'.join(names)} "
                    "as a non-empty string"
                )
        if self.kind == JobKind.TRAINING and not _DESTINATION.match(str(self.input["destination"])):
            raise ValueError(
                "input.destination must be 'owner/model' (where the trained version is pushed)"
            )
        if self.model is not None:
            problem = model_reference_error(self.model, self.kind)
            if problem:
                raise ValueError(problem)
        return self


class OutputPublic(BaseModel):
    index: int
    url: str = Field(description="permanent URL of the stored file (same auth as the job)")
    key: str
    content_type: str
    bytes: int
    sha256: str


class JobPublic(BaseModel):
    id: str
    kind: JobKind
    status: JobStatus
    user_id: str
    provider: str
    provider_status: str | None
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
