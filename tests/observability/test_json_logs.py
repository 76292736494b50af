"""LOG_FORMAT=json: one JSON object per record, with the job, workflow and trace it belongs to."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from core.logs import OWN_HANDLER_LOGGERS, JsonFormatter, configure_logging, log_format
from core.tracing import setup_tracing, shutdown_tracing, tracer


class Lines(logging.Handler):
    """Keeps every record as the JSON formatter writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("autosync.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    base = activity.logger.base_logger
    base.addHandler(handler)
    level, base.level = base.level, logging.INFO
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        base.removeHandler(handler)
        base.setLevel(level)


async def test_an_activity_log_line_carries_its_workflow_and_job(lines: Lines) -> None:
    env = ActivityEnvironment()
    env.info = replace(
        env.info,
        activity_type="media.store_outputs",
        workflow_id="media-job-4f1c",
        workflow_run_id="run-77",
        workflow_type="MediaJobWorkflow",
        attempt=2,
    )

    @activity.defn(name="media.store_outputs")
    async def store() -> None:
        activity.logger.warning("could not delete %s", "key-1", extra={"provider": "replicate"})

    await env.run(store)
    [line] = lines.lines
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "temporalio.activity"
    assert entry["message"].startswith("could not delete key-1")
    assert entry["workflow_id"] == "media-job-4f1c" and entry["job_id"] == "4f1c"
    assert entry["temporal_run_id"] == "run-77" and entry["attempt"] == 2
    assert entry["activity_type"] == "media.store_outputs" and entry["provider"] == "replicate"
    assert entry["time"].endswith("+00:00")


def test_a_workflow_log_line_names_its_sync_run(lines: Lines) -> None:
    logging.getLogger("autosync.test-logs").info(
        "module done",
        extra={"temporal_workflow": {"workflow_id": "sync-run-r9", "run_id": "t-1",
                                     "workflow_type": "SyncRunWorkflow"}},
    )  # fmt: skip
    [entry] = lines.parsed()
    assert entry["run_id"] == "r9" and entry["workflow_id"] == "sync-run-r9"
    assert entry["temporal_run_id"] == "t-1" and "job_id" not in entry


def test_a_log_line_inside_a_span_carries_its_trace_id(lines: Lines) -> None:
    setup_tracing("test", exporter=InMemorySpanExporter())
    try:
        with tracer().start_as_current_span("work") as span:
            logging.getLogger("autosync.test-logs").info("inside")
        logging.getLogger("autosync.test-logs").info("outside")
    finally:
        shutdown_tracing()
    inside, outside = lines.parsed()
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside


def test_an_exception_stays_on_one_line(lines: Lines) -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logging.getLogger("autosync.test-logs").exception("failed")
    [line] = lines.lines
    assert "\n" not in line and "ValueError: bad" in json.loads(line)["exception"]


def test_log_format_json_installs_one_json_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    own = [logging.getLogger(name) for name in OWN_HANDLER_LOGGERS]
    saved_own = [(list(logger.handlers), logger.propagate) for logger in own]
    # An in-process uvicorn of an earlier test (log_level="warning") leaves its loggers' levels.
    for logger in own:
        monkeypatch.setattr(logger, "level", logging.NOTSET)
        monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setenv("LOG_FORMAT", "json")
    out = io.StringIO()
    try:
        assert configure_logging(stream=out) == "json"
        assert configure_logging(stream=out) == "json"  # again: still one handler
        logging.getLogger("autosync.test-logs").info("hello %s", "world")
        logging.getLogger("uvicorn.error").info("Started server process")
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
        for logger, (handlers, propagate) in zip(own, saved_own, strict=True):
            logger.handlers[:], logger.propagate = handlers, propagate
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["message"] for e in entries] == ["hello world", "Started server process"]


def test_log_format_is_text_by_default_and_refuses_a_typo() -> None:
    assert log_format({}) == "text"
    assert log_format({"LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        log_format({"LOG_FORMAT": "jsn"})
