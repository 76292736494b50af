"""One home per domain (issue 12), checked: each workflow input is built in one place, routes
reach the app's clients only through `api.deps`, and the shared helpers (the 503, the workflow
URL, the workflow and signal names) say the same thing everywhere they are used."""

from __future__ import annotations

import ast
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio import workflow

from api.errors import install_error_handlers, orchestrator_unavailable
from core.contracts import (
    CANCEL_SIGNAL,
    MEDIA_JOB_WORKFLOW,
    PROVIDER_EVENT_SIGNAL,
    SYNC_RUN_WORKFLOW,
    JobStatus,
    SyncMode,
    SyncRunInput,
)
from core.jobs.start import media_job_input
from core.links import workflow_url
from core.models import Job, SyncRun
from core.settings import Settings
from core.sync_runs.start import scheduled_run, start_run_workflow, sync_run_input
from sync_modules.registry import all_modules
from tests.errors import error_of
from workflows.media_job import MediaJobWorkflow
from workflows.sync_run import SyncRunWorkflow

ROOT = Path(__file__).resolve().parent.parent
# The code that runs (tests and benches build inputs of their own on purpose).
SOURCE_DIRS = ("activities", "api", "core", "providers", "storage", "sync_modules", "workflows")


def source_files() -> list[Path]:
    files = [ROOT / "worker.py"]
    for folder in SOURCE_DIRS:
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def constructed(path: Path, name: str) -> int:
    """How many calls of `name(...)` the file makes."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return sum(
        1
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    )


@pytest.mark.parametrize(
    ("name", "home"),
    [("MediaJobInput", "core/jobs/start.py"), ("SyncRunInput", "core/sync_runs/start.py")],
)
def test_each_workflow_input_is_built_in_one_place(name: str, home: str) -> None:
    found = {
        str(path.relative_to(ROOT)): count
        for path in source_files()
        if (count := constructed(path, name))
    }
    assert found == {home: 1}


def reads_app_state(path: Path) -> list[int]:
    """Lines where the file reads `<x>.app.state`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "state"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "app"
    ]


def test_routes_reach_the_apps_clients_only_through_the_typed_dependencies() -> None:
    # api/deps.py reads app.state for everyone; api/main.py fills it in the lifespan.
    allowed = {"api/deps.py", "api/main.py"}
    found = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "api").rglob("*.py"))
        if str(path.relative_to(ROOT)) not in allowed and (lines := reads_app_state(path))
    }
    assert found == {}


def test_the_app_state_check_sees_a_read(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f(request, websocket):\n    a = request.app.state.x\n"
                      "    return websocket.app.state.y\n")  # fmt: skip
    assert reads_app_state(sample) == [2, 3]


def settings(**changes: Any) -> Settings:
    return Settings(_env_file=None, secret_key="k" * 32, **changes)  # type: ignore[call-arg]


def job(**fields: Any) -> Job:
    values: dict[str, Any] = dict(
        id="j1", user_id="alice", kind="edit", provider="replicate", model="owner/name",
        input={"prompt": "a fox", "image": "http://api.test/v1/jobs/j0/outputs/0"},
        status=JobStatus.QUEUED.value, project_id="p1", node_id="n1",
    )  # fmt: skip
    values.update(fields)
    return Job(**values)


def test_a_new_job_is_submitted_with_the_input_the_provider_gets() -> None:
    sent = {"prompt": "a fox", "image": "http://api.test/v1/jobs/j0/outputs/0?token=t"}
    made = media_job_input(job(), settings(), sent)
    assert made.input == sent and made.adopt_provider_job_id is None
    assert (made.job_id, made.user_id, made.project_id, made.node_id) == ("j1", "alice", "p1", "n1")
    assert str(made.webhook_url).startswith("http://localhost:8000/webhooks/replicate?job_id=j1&")


def test_a_job_with_a_provider_job_is_adopted_with_its_recorded_input() -> None:
    made = media_job_input(job(provider_job_id="pred-1"), settings())
    assert made.adopt_provider_job_id == "pred-1"
    assert made.input == job().input


class StartRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any, dict[str, Any]]] = []

    async def start_workflow(self, workflow: Any, arg: Any, **options: Any) -> None:
        self.calls.append((workflow, arg, options))


async def test_runs_started_by_the_api_and_by_a_schedule_run_with_the_same_settings() -> None:
    tuned = settings(
        sync_page_size=250, sync_pages_per_activity=3, sync_concurrency=2, sync_max_retries=7,
        erp_task_queue="erp-q", max_enrich_per_run=9, sync_task_queue="sync-q",
    )  # fmt: skip
    run = SyncRun(
        id="r1", company_id="acme", mode=SyncMode.PERIOD.value, modules=["vendas"],
        start_date=date(2024, 12, 1), end_date=date(2024, 12, 31),
    )  # fmt: skip
    client = StartRecorder()
    await start_run_workflow(client, tuned, run)  # type: ignore[arg-type]
    [(name, by_api, options)] = client.calls
    assert (name, options["id"], options["task_queue"]) == (
        SYNC_RUN_WORKFLOW,
        "sync-run-r1",
        "sync-q",
    )
    assert by_api == SyncRunInput(
        run_id="r1", company_id="acme", mode=SyncMode.PERIOD, modules=["vendas"],
        start_date="2024-12-01", end_date="2024-12-31", page_size=250, pages_per_activity=3,
        concurrency=2, max_retries=7, task_queue="erp-q", max_enrich=9,
    )  # fmt: skip
    action = scheduled_run(tuned, "acme")
    assert (action.workflow, action.task_queue) == (SYNC_RUN_WORKFLOW, "sync-q")
    [by_schedule] = action.args
    assert by_schedule == sync_run_input(
        tuned, run_id="", company_id="acme", mode=SyncMode.INCREMENTAL,
        modules=list(all_modules()),
    )  # fmt: skip
    shared = ("page_size", "pages_per_activity", "concurrency", "max_retries", "task_queue",
              "max_enrich")  # fmt: skip
    assert {f: getattr(by_schedule, f) for f in shared} == {f: getattr(by_api, f) for f in shared}


def test_the_workflow_url_quotes_the_namespace() -> None:
    assert workflow_url(settings(temporal_ui_url="http://ui:8233/"), "sync-run-r1") == (
        "http://ui:8233/namespaces/default/workflows/sync-run-r1"
    )
    odd = settings(temporal_ui_url="http://ui", temporal_namespace="team a/b")
    assert workflow_url(odd, "media-job-j1") == (
        "http://ui/namespaces/team%20a%2Fb/workflows/media-job-j1"
    )
    assert workflow_url(settings(temporal_ui_url=""), "media-job-j1") is None


def test_workflows_are_named_and_signalled_by_the_shared_constants() -> None:
    media = workflow._Definition.must_from_class(MediaJobWorkflow)
    sync = workflow._Definition.must_from_class(SyncRunWorkflow)
    assert (media.name, sync.name) == (MEDIA_JOB_WORKFLOW, SYNC_RUN_WORKFLOW)
    assert {CANCEL_SIGNAL, PROVIDER_EVENT_SIGNAL} <= set(media.signals)
    assert CANCEL_SIGNAL in sync.signals


async def test_the_orchestrator_503_names_what_was_recorded_and_says_when_to_retry() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/plain")
    async def plain() -> None:
        raise orchestrator_unavailable()

    @app.get("/recorded")
    async def recorded() -> None:
        raise orchestrator_unavailable("down; job j1 is queued", job_id="j1")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        bare, named = await client.get("/plain"), await client.get("/recorded")
    assert (bare.status_code, named.status_code) == (503, 503)
    assert bare.headers["retry-after"] == named.headers["retry-after"] != ""
    assert error_of(bare) == {
        "code": "unavailable", "message": "the orchestrator is unavailable; try again",
        "details": {},
    }  # fmt: skip
    assert error_of(named) == {
        "code": "orchestrator_unavailable", "message": "down; job j1 is queued",
        "details": {"job_id": "j1"},
    }  # fmt: skip
