"""Log setup of the API and the worker: `LOG_FORMAT=text` (the default) or `json`.

JSON is one object per line: `time`, `level`, `logger`, `message`, then what is known of the
event's context: `job_id` / `run_id` (the media job or sync run it concerns), `workflow_id`,
`temporal_run_id`, the activity's type and attempt, `trace_id` / `span_id` of the current
OpenTelemetry span, and any `extra={...}` fields with plain values. Temporal's workflow and
activity loggers attach their context as the `temporal_workflow` / `temporal_activity` extras;
they are flattened here. Child processes (devstack) inherit `LOG_FORMAT` with the environment.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from core.contracts import MEDIA_JOB_PREFIX, SYNC_RUN_WORKFLOW_PREFIX
from core.tracing import current_trace_ids

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Loggers that bring handlers of their own; in JSON mode their records go through ours.
OWN_HANDLER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with terminal colours
    "taskName",
}
_PLAIN = (str, int, float, bool, type(None))


def log_format(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    value = env.get("LOG_FORMAT", "text").strip().lower() or "text"
    if value not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {value!r}")
    return value


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ids a record carries, from Temporal's extras, its own extras and the current span."""
    fields: dict[str, Any] = {}
    wf = getattr(record, "temporal_workflow", None)
    if isinstance(wf, Mapping):
        fields["workflow_id"] = wf.get("workflow_id")
        fields["temporal_run_id"] = wf.get("run_id")
        fields["workflow_type"] = wf.get("workflow_type")
    act = getattr(record, "temporal_activity", None)
    if isinstance(act, Mapping):
        fields["workflow_id"] = act.get("workflow_id")
        fields["temporal_run_id"] = act.get("workflow_run_id")
        fields["workflow_type"] = act.get("workflow_type")
        fields["activity_type"] = act.get("activity_type")
        fields["activity_id"] = act.get("activity_id")
        fields["attempt"] = act.get("attempt")
    workflow_id = fields.get("workflow_id")
    if isinstance(workflow_id, str):
        # Our workflow ids name what they run: the job or sync run id is their suffix.
        if workflow_id.startswith(MEDIA_JOB_PREFIX):
            fields["job_id"] = workflow_id.removeprefix(MEDIA_JOB_PREFIX)
        elif workflow_id.startswith(SYNC_RUN_WORKFLOW_PREFIX):
            fields["run_id"] = workflow_id.removeprefix(SYNC_RUN_WORKFLOW_PREFIX)
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("temporal_") and isinstance(value, _PLAIN):
            fields[key] = value
    ids = current_trace_ids()
    if ids is not None:
        fields["trace_id"], fields["span_id"] = ids
    return {k: v for k, v in fields.items() if v is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(context_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    *, text_format: str | None = None, level: int = logging.INFO, stream: Any = None
) -> str:
    """Install the root handler for LOG_FORMAT; returns the format in force.

    Text: `logging.basicConfig(text_format)` when one is given (the worker), else nothing
    (the API keeps uvicorn's logging as it was). JSON: one handler on the root, replacing any
    earlier one, and uvicorn's loggers handing their records to it.
    """
    fmt = log_format()
    root = logging.getLogger()
    if fmt == "text":
        if text_format is not None:
            logging.basicConfig(level=level, format=text_format, stream=stream)
        return fmt
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in OWN_HANDLER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return fmt
