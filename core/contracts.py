"""Names and shapes shared by the API, the workflows and the activities.

Everything here is plain data, safe to import inside the workflow sandbox. Workflow inputs and
outputs are dataclasses with defaults on every added field, so running histories keep decoding
when a field is added.
"""

# No `from __future__ import annotations`: Temporal's converter calls get_type_hints for each
# dataclass it decodes, and string annotations are evaluated again on every call (~0.5 ms for
# MediaJobInput alone); a class used in an annotation is defined above its use.

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from temporalio.common import SearchAttributeKey


class JobKind(StrEnum):
    GENERATION = "generation"
    EDIT = "edit"
    UPSCALE = "upscale"
    VIDEO = "video"
    TRAINING = "training"


# Storage folder per kind (seed 001). A training's files (weights, LoRA files, configs) are
# stored too: the provider's URLs expire like any other output's.
STORAGE_CONTEXT: dict[JobKind, str] = {
    JobKind.GENERATION: "generated",
    JobKind.EDIT: "edited",
    JobKind.UPSCALE: "upscaled",
    JobKind.VIDEO: "videos",
    JobKind.TRAINING: "trainings",
}


class JobStatus(StrEnum):
    """Our status of a job; it only ever moves forward (see `JOB_STATUS_RANK`)."""

    QUEUED = "queued"
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    STORING = "storing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    # A succeeded job whose stored outputs the retention cleanup deleted (OUTPUT_RETENTION_DAYS).
    EXPIRED = "expired"


TERMINAL_JOB_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.EXPIRED}
)

JOB_STATUS_RANK: dict[JobStatus, int] = {
    JobStatus.QUEUED: 0,
    JobStatus.SUBMITTED: 1,
    JobStatus.PROCESSING: 2,
    JobStatus.STORING: 3,
    JobStatus.SUCCEEDED: 4,
    JobStatus.FAILED: 4,
    JobStatus.CANCELED: 4,
    JobStatus.EXPIRED: 5,  # only from succeeded, and only by the retention cleanup
}


class ProviderPhase(StrEnum):
    """A provider's own status, normalised; terminal phases are final whatever comes later."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL_PHASES = frozenset({ProviderPhase.SUCCEEDED, ProviderPhase.FAILED, ProviderPhase.CANCELED})

PHASE_RANK: dict[ProviderPhase, int] = {
    ProviderPhase.QUEUED: 0,
    ProviderPhase.RUNNING: 1,
    ProviderPhase.SUCCEEDED: 2,
    ProviderPhase.FAILED: 2,
    ProviderPhase.CANCELED: 2,
}


# --- Workflow ids: derived from domain ids so the API never needs a lookup -------------------

MEDIA_JOB_PREFIX = "media-job-"
# The workflow types and their signals, so code below the workflows (core/) can start and
# signal them by name.
MEDIA_JOB_WORKFLOW = "MediaJobWorkflow"
SYNC_RUN_WORKFLOW = "SyncRunWorkflow"
# Both workflows: (reason: str) -> stop, reaching the provider / before the next page.
CANCEL_SIGNAL = "cancel"
# MediaJobWorkflow: (ProviderEvent) -> a webhook's (or the recovery sweep's) news of the job.
PROVIDER_EVENT_SIGNAL = "provider_event"


def media_job_workflow_id(job_id: str) -> str:
    return f"{MEDIA_JOB_PREFIX}{job_id}"


def job_id_from_workflow_id(workflow_id: str) -> str:
    if not workflow_id.startswith(MEDIA_JOB_PREFIX):
        raise ValueError(f"{workflow_id!r} is not a media job workflow id")
    return workflow_id[len(MEDIA_JOB_PREFIX) :]


# --- Search attributes (registered on the dev server by the stack runner) ---------------------

SA_USER = SearchAttributeKey.for_keyword("AutosyncUser")
SA_KIND = SearchAttributeKey.for_keyword("AutosyncKind")
SA_PROVIDER = SearchAttributeKey.for_keyword("AutosyncProvider")
SA_STATUS = SearchAttributeKey.for_keyword("AutosyncStatus")
SA_COMPANY = SearchAttributeKey.for_keyword("AutosyncCompany")
SA_MODULE = SearchAttributeKey.for_keyword("AutosyncModule")

SEARCH_ATTRIBUTES: list[SearchAttributeKey[Any]] = [
    SA_USER, SA_KIND, SA_PROVIDER, SA_STATUS, SA_COMPANY, SA_MODULE,
]  # fmt: skip


# --- Workflow and activity payloads ------------------------------------------------------------


@dataclass
class AdmissionLimits:
    """What a provider's admission workflow lets run at once (0: no limit)."""

    max_active: int = 0  # jobs at the provider (PROVIDER_MAX_ACTIVE)
    max_per_user: int = 20  # jobs of one user at the provider (MAX_ACTIVE_JOBS_PER_USER)
    # Of `max_active`, slots only a user with nothing at the provider may take
    # (PROVIDER_FAIR_RESERVE): a newcomer's job need not wait for a flood's job to end.
    reserve: int = 0


@dataclass
class PollPolicy:
    """Poll fallback timing: constant at first, then growing by `backoff` up to `max_seconds`."""

    interval_seconds: float = 10.0
    backoff_after_seconds: float = 60.0
    backoff: float = 1.5
    max_seconds: float = 300.0
    # A provider poller (ProviderPollerWorkflow) refreshes the job every interval, in bulk with
    # the provider's other jobs: the job's own timer waits `max_seconds` from the start, as the
    # last resort (False in histories recorded before the pollers: the job's timer is the poll).
    bulk_poller: bool = False


@dataclass
class MediaJobInput:
    job_id: str
    user_id: str
    kind: JobKind
    provider: str
    model: str
    input: dict[str, Any]
    webhook_url: str | None = None
    # Recorded in histories; unused since each provider's client asks for the webhook events
    # its own settings name (REPLICATE_WEBHOOK_EVENTS).
    webhook_events: list[str] = field(default_factory=lambda: ["completed"])
    poll: PollPolicy = field(default_factory=PollPolicy)
    project_id: str | None = None
    node_id: str | None = None
    # Only the time-skipping test server lacks custom search attributes.
    search_attributes: bool = True
    # Adoption: follow this job already at the provider instead of submitting a new one.
    adopt_provider_job_id: str | None = None
    # The task queue of the output copy (empty: the workflow's own, as before it had one).
    storage_task_queue: str = ""
    # Queue controls (None / defaults in histories recorded before them): 0 interactive …
    # 2 batch; the provider's admission limits (None: the job goes straight to the provider);
    # seconds after which the job is cancelled at the provider (None: no deadline).
    priority: int = 1
    admission: AdmissionLimits | None = None
    deadline_seconds: float | None = None
    # Admitted jobs' creates and cancels go to this task queue (its rate limit is shared by
    # every worker); empty: the submit is a local activity, as before.
    provider_task_queue: str = ""


@dataclass
class ProviderSnapshot:
    """What a provider says about a job, from a submit, a poll or a webhook."""

    provider_job_id: str
    provider_status: str
    phase: ProviderPhase
    output_urls: list[str] = field(default_factory=list)
    # Anything else worth recording from the output (a trained model version, weights …).
    output_data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    data_removed: bool = False
    completed_at: str | None = None
    # The provider's own accounting of the job, in its own field names (Replicate
    # `predict_time`, fal `inference_time`, KIE `creditsConsumed`): its cost, once priced.
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProviderEvent:
    """A verified webhook, sent by the bridge as the `provider_event` signal."""

    snapshot: ProviderSnapshot
    webhook_id: str | None = None
    received_at: str | None = None
    # Who sent it: the webhook bridge, or a provider poller that saw the job change (counted
    # as a poll by the workflow).
    source: str = "webhook"


EVENT_FROM_POLLER = "poller"


@dataclass
class SubmitRequest:
    job_id: str
    kind: JobKind
    provider: str
    model: str
    input: dict[str, Any]
    webhook_url: str | None
    # The job's (MediaJobInput.webhook_events); a client configured with its own asks for those.
    webhook_events: list[str]
    # Seconds left of the job's deadline when it is submitted (Replicate's `Cancel-After`).
    cancel_after_seconds: float | None = None


@dataclass
class ProviderRef:
    job_id: str
    kind: JobKind
    provider: str
    provider_job_id: str
    # fal's status, result and cancel URLs name the app; empty in histories recorded before.
    model: str = ""


@dataclass
class StoredThumbnail:
    key: str
    content_type: str
    width: int
    height: int
    bytes: int


@dataclass
class StoredOutput:
    index: int
    key: str
    content_type: str
    bytes: int
    sha256: str
    source_url: str
    # Images: their size as displayed, and a thumbnail (None for videos and other files, or
    # when it could not be made: `metadata["thumbnail_error"]` says why).
    width: int | None = None
    height: int | None = None
    thumbnail: StoredThumbnail | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoreRequest:
    job_id: str
    user_id: str
    kind: JobKind
    snapshot: ProviderSnapshot
    webhook_count: int = 0
    poll_count: int = 0
    # Whose outputs these are, for PROVIDER_OUTPUT_HOSTS ("": histories from before it).
    provider: str = ""


@dataclass
class StoreResult:
    outputs: list[StoredOutput]
    storage_provider: str
    storage_bucket: str | None
    # The snapshot's output_data plus `stored` (field → key of its copy); None in histories
    # recorded before it.
    output_data: dict[str, Any] | None = None


@dataclass
class JobProgress:
    """A forward-only update of the job record (short DB write, run as a local activity)."""

    job_id: str
    status: JobStatus
    provider_status: str | None = None
    # The provider's status normalised (None: not known, as in histories recorded before it).
    provider_phase: ProviderPhase | None = None
    provider_job_id: str | None = None
    error: str | None = None
    webhook_count: int = 0
    poll_count: int = 0
    output_data: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobState:
    """The `state` query: everything a caller may want to know about a running job."""

    job_id: str
    status: JobStatus
    provider_status: str | None = None
    provider_job_id: str | None = None
    outputs: list[StoredOutput] = field(default_factory=list)
    output_data: dict[str, Any] = field(default_factory=dict)
    webhook_count: int = 0
    poll_count: int = 0
    last_error: str | None = None
    cancel_requested: bool = False
    # ISO-8601 times of each phase, from the workflow's deterministic clock.
    timings: dict[str, str] = field(default_factory=dict)


@dataclass
class MediaJobResult:
    status: JobStatus
    outputs: list[StoredOutput] = field(default_factory=list)
    output_data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# Activity names of the media job. Workflows call activities by these names only (never by
# method reference, which would import the activity code into the workflow sandbox), and the
# activities are defined with them. A name is recorded in every history that scheduled the
# activity: renaming one breaks the replay of running jobs.
MEDIA_SUBMIT = "media.submit"
MEDIA_POLL = "media.poll"
MEDIA_CANCEL = "media.cancel"
MEDIA_RECORD = "media.record"
MEDIA_STORE_OUTPUTS = "media.store_outputs"

# ApplicationError types raised by activities and matched by workflows.
ERR_PROVIDER_REJECTED = "ProviderRejected"
ERR_PROVIDER_RATE_LIMITED = "ProviderRateLimited"
ERR_OUTPUT_EXPIRED = "OutputExpired"
ERR_OUTPUT_INVALID = "OutputInvalid"
# A stored object was gone when the job was about to be recorded succeeded (retryable).
ERR_OUTPUT_VANISHED = "OutputVanished"
# An earlier submit attempt may have created a provider job we can't look up (fal, KIE): the
# workflow waits for that job's webhook instead of creating a second one (non-retryable).
ERR_SUBMIT_UNCONFIRMED = "SubmitUnconfirmed"

# How long a job whose submit is unconfirmed waits for the provider's word (its webhook) about
# the job an interrupted attempt may have created. fal and KIE call back only when a job ends,
# and fal retries a failed delivery for two hours: the wait covers a long run of the kind plus
# those retries. Past it the job fails rather than paying for a second provider job.
UNCONFIRMED_SUBMIT_WAIT_SECONDS: dict[JobKind, int] = {
    JobKind.GENERATION: 3 * 3600,
    JobKind.EDIT: 3 * 3600,
    JobKind.UPSCALE: 3 * 3600,
    JobKind.VIDEO: 6 * 3600,
    JobKind.TRAINING: 24 * 3600,
}


# --- Provider pollers: one per provider account, refreshing its quiet jobs in bulk -------------

PROVIDER_POLLER_PREFIX = "provider-poller-"
PROVIDER_POLLER_WORKFLOW = "ProviderPollerWorkflow"
# Its activity: one sweep of the provider's quiet jobs (PollSweepRequest -> PollSweepResult).
PROVIDER_POLL_SWEEP = "media.poll_provider"


def provider_poller_workflow_id(provider: str) -> str:
    return f"{PROVIDER_POLLER_PREFIX}{provider}"


@dataclass
class ProviderPollerInput:
    provider: str
    # A sweep starts every interval (the jobs' PollPolicy.interval_seconds).
    interval_seconds: float = 10.0
    # Sweeps per workflow run before it continues as new (bounds its history).
    sweeps_per_run: int = 200


@dataclass
class PollSweepRequest:
    provider: str
    interval_seconds: float


@dataclass
class PollSweepResult:
    # Jobs of the provider that were in flight, and those quiet long enough to be asked about.
    in_flight: int = 0
    asked: int = 0
    # Calls made to the provider (list pages and single reads).
    provider_calls: int = 0
    # Jobs whose provider phase moved, each signalled once (`provider_event`).
    signalled: int = 0
    # A webhook of this provider arrived lately: only jobs quiet for several intervals were
    # asked about (otherwise every job in flight is).
    webhooks_arriving: bool = False


# --- Sync runs (seed 002) -----------------------------------------------------------------------


class SyncStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    # A scheduled run that found its company busy (a manual run going): it never started.
    SKIPPED = "SKIPPED"


TERMINAL_SYNC_STATUSES = frozenset(
    {SyncStatus.DONE, SyncStatus.FAILED, SyncStatus.CANCELED, SyncStatus.SKIPPED}
)


class ModuleStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"


class SyncMode(StrEnum):
    INCREMENTAL = "incremental"
    PERIOD = "period"


# A sync run's workflow id (`core.events.SYNC_RUN_TOPIC_PREFIX` names its events' topic).
SYNC_RUN_WORKFLOW_PREFIX = "sync-run-"


def sync_run_workflow_id(run_id: str) -> str:
    return f"{SYNC_RUN_WORKFLOW_PREFIX}{run_id}"


@dataclass
class ModuleProgress:
    status: ModuleStatus = ModuleStatus.PENDING
    processed: int = 0
    skipped: int = 0
    errors: int = 0
    pages: int = 0
    enriched: int = 0
    cursor: str | None = None
    done: bool = False  # the upstream has no more pages
    error: str | None = None
    # Reconciliation: rows received, and the upstream's total as its latest page reported it.
    received: int = 0
    upstream_total: int | None = None


@dataclass
class SyncResume:
    """The state a run carries into its next workflow execution (continue-as-new)."""

    modules: dict[str, ModuleProgress]
    since: dict[str, str]  # incremental runs: each module's `updated_since`
    cursor_since: str  # the cursor committed when a module ends
    enrich_left: int
    executions: int = 1  # earlier executions of this run


@dataclass
class SyncRunInput:
    run_id: str
    company_id: str
    mode: SyncMode
    modules: list[str]
    # Period runs: ISO dates of the business-date window (inclusive).
    start_date: str | None = None
    end_date: str | None = None
    page_size: int = 1000
    pages_per_activity: int = 1
    concurrency: int = 1  # modules run at once (the seed's CONCURRENCY)
    max_retries: int = 5  # attempts per page, 429s excepted (the seed's MAX_RETRIES)
    task_queue: str = "erp-sync"  # rate-limited queue of the page activities
    max_enrich: int = 0  # records enriched with their detail endpoint, per run (all modules)
    search_attributes: bool = True
    # History events after which the run continues as new (0: when the server suggests it).
    continue_after_events: int = 0
    # Set when the run continued as new: where it was.
    resume: SyncResume | None = None


@dataclass
class PageRequest:
    """Up to `max_pages` pages of one module, each fetched, upserted and counted in its own
    transaction, starting at page `page` (or where the module's committed pages end)."""

    run_id: str
    company_id: str
    module: str
    page: int  # pages of this module already committed before this one
    cursor: str | None
    page_size: int
    start_date: str | None = None
    end_date: str | None = None
    updated_since: str | None = None
    enrich: int = 0  # at most this many rows of these pages get their details fetched
    max_pages: int = 1


@dataclass
class RunRecord:
    """A forward-only update of a sync run's record and an optional log line."""

    run_id: str
    status: SyncStatus | None = None
    current_module: str | None = None
    module: str | None = None
    module_progress: ModuleProgress | None = None
    error_message: str | None = None
    # A module that finished: where its next incremental run starts (ISO datetime).
    cursor_since: str | None = None
    log_level: str | None = None
    log_message: str | None = None
    log_metadata: dict[str, Any] = field(default_factory=dict)


# Activity names of the sync run (see the media job's names above). `sync.fetch_page` is the
# name recorded in histories from before the activity fetched several pages.
SYNC_FETCH_PAGES = "sync.fetch_page"
SYNC_OPEN_RUN = "sync.open_run"
SYNC_UPDATED_SINCE = "sync.updated_since"
SYNC_RECORD = "sync.record"


@dataclass
class SyncRunState:
    run_id: str
    company_id: str
    status: SyncStatus
    current_module: str | None
    modules: dict[str, ModuleProgress]
    cancel_requested: bool = False
    error_message: str | None = None


# --- Housekeeping --------------------------------------------------------------------------

# PruneEventsWorkflow's activity: (retention hours: float) -> rows deleted (int).
EVENTS_PRUNE = "events.prune"


# --- Admission: one workflow per provider decides which queued job goes to the provider next ---

ADMISSION_PREFIX = "admission-"
ADMISSION_WORKFLOW = "AdmissionWorkflow"
# AdmissionWorkflow signals: (AdmissionRequest) a job asks for a slot; (AdmissionRelease) a job
# left the provider or withdrew from the line; (float) a 429 asks to pause grants that long.
ADMISSION_REQUEST_SIGNAL = "request"
ADMISSION_RELEASE_SIGNAL = "release"
ADMISSION_PAUSE_SIGNAL = "pause"
# AdmissionWorkflow query: (job_id) -> QueuePosition.
ADMISSION_POSITION_QUERY = "position"
# MediaJobWorkflow signal: () the job may go to the provider now.
ADMISSION_GRANTED_SIGNAL = "admission_granted"
# Activities: ask for a slot (signal-with-start), give it back, and which holders have ended.
ADMISSION_REQUEST = "admission.request"
ADMISSION_RELEASE = "admission.release"
ADMISSION_ENDED = "admission.ended"
# The reason a job past its `deadline_seconds` ends `canceled` with.
DEADLINE_REASON = "deadline exceeded"
PRIORITY_INTERACTIVE, PRIORITY_DEFAULT, PRIORITY_BATCH = 0, 1, 2


def admission_workflow_id(provider: str) -> str:
    return f"{ADMISSION_PREFIX}{provider}"


@dataclass
class AdmissionRequest:
    job_id: str
    user_id: str
    provider: str
    priority: int = PRIORITY_DEFAULT
    limits: AdmissionLimits = field(default_factory=AdmissionLimits)


@dataclass
class AdmissionRelease:
    job_id: str
    provider: str


@dataclass
class AdmissionTicket:
    """A job in a provider's line or holding one of its slots; `arrived`: order of requests."""

    job_id: str
    user_id: str
    priority: int
    arrived: int


@dataclass
class AdmissionState:
    """Everything AdmissionWorkflow carries over continue-as-new."""

    provider: str
    limits: AdmissionLimits = field(default_factory=AdmissionLimits)
    waiting: list[AdmissionTicket] = field(default_factory=list)
    holders: list[AdmissionTicket] = field(default_factory=list)
    # user -> the sequence number of their last grant (round-robin: the smallest goes first).
    last_grant: dict[str, int] = field(default_factory=dict)
    seq: int = 0
    paused_until: str | None = None  # ISO time; grants wait until then (a provider's 429)


@dataclass
class QueuePosition:
    """A job's place in its provider's line: `position` 1 is granted next (None: not waiting)."""

    position: int | None
    granted: bool
    waiting: int
    active: int
