"""`autosync`: the API from a terminal or a script.

    autosync jobs submit generation -p "a red fox" --watch
    autosync --json jobs list --status failed --all | jq -r '.[].id'
    autosync sync start acme --mode period --month 2024-12 --watch

Configuration: `--url` / `--api-key`, else AUTOSYNC_URL / AUTOSYNC_API_KEY. `--json` prints
the API's answer as JSON (watches: one JSON line per update) instead of text.

Exit codes: 0 done; 1 the API answered an error (its message is printed); 2 bad usage;
3 the API could not be reached; 4 a watched job or run ended without succeeding.
"""

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from autosync_client.client import Client
from autosync_client.errors import ApiError, ApiUnreachable, AutosyncError
from autosync_client.models import Job, JobUpdate, RunUpdate, SyncRun

EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_SUCCEEDED = 4

T = TypeVar("T")

app = typer.Typer(
    help="autosync: media jobs, sync runs, schedules, usage and API keys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
jobs_app = typer.Typer(
    help="Media jobs: submit, follow, list, cancel, rerun.", no_args_is_help=True
)
sync_app = typer.Typer(
    help="Sync runs (admins): start, follow, logs, cancel.", no_args_is_help=True
)
schedules_app = typer.Typer(help="Scheduled incremental syncs (admins).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (admins): list, create, revoke.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(sync_app, name="sync")
app.add_typer(schedules_app, name="schedules")
app.add_typer(keys_app, name="keys")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class Options:
    url: str | None
    api_key: str | None
    json: bool


def _options(ctx: typer.Context) -> Options:
    options = ctx.find_object(Options)
    assert options is not None
    return options


@app.callback()
def _main(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(envvar="AUTOSYNC_URL", help="the API's base URL")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="AUTOSYNC_API_KEY", help="your API key", show_default=False),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="print JSON, for scripts")] = False,
) -> None:
    ctx.obj = Options(url=url, api_key=api_key, json=json_)


def fail(message: str, code: int) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


@contextmanager
def client(ctx: typer.Context) -> Iterator[Client]:
    """A client from the options; the API's errors as a message and an exit code."""
    options = _options(ctx)
    try:
        with Client(options.url, options.api_key) as api:
            yield api
    except ApiError as exc:
        fail(f"{exc.message} (HTTP {exc.status_code}, {exc.code})", EXIT_API_ERROR)
    except ApiUnreachable as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    except AutosyncError as exc:
        fail(str(exc), EXIT_USAGE)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def emit(ctx: typer.Context, value: Any, text: Callable[[], None]) -> None:
    """`value` as JSON with --json, else what `text` prints."""
    if not _options(ctx).json:
        text()
    elif sys.stdout.isatty():
        out.print_json(json.dumps(_plain(value)), indent=2)
    else:
        print(json.dumps(_plain(value)), flush=True)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _json_arg(value: str | None, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        fail(f"{name}: not JSON ({exc})", EXIT_USAGE)
    if not isinstance(parsed, dict):
        fail(f"{name}: expected a JSON object", EXIT_USAGE)
    return parsed


# The bulk filter's fields that hold lists (a job matches any value): given twice or with
# commas, they add up; the others (created_after, created_before, project_id) are one value.
_LIST_FILTERS = ("status", "kind", "provider")


def _filters(pairs: list[str] | None) -> dict[str, Any] | None:
    if not pairs:
        return None
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--filter {pair!r}: expected KEY=VALUE (e.g. status=failed)", EXIT_USAGE)
        if key in _LIST_FILTERS:
            found.setdefault(key, []).extend(v for v in value.split(",") if v)
        else:
            found[key] = value
    return found


# --- me -------------------------------------------------------------------------------------


@app.command()
def me(ctx: typer.Context) -> None:
    """Who the API key belongs to, and what it may do."""
    with client(ctx) as api:
        who = api.me()

    def text() -> None:
        role = "admin" if who.is_admin else "user"
        out.print(f"{who.user_id} ({role}) at {_options(ctx).url or api.url}", markup=False)
        out.print(f"providers: {', '.join(who.providers)}", markup=False)
        if who.companies:
            out.print(f"companies: {', '.join(who.companies)}", markup=False)

    emit(ctx, who, text)


# --- jobs -----------------------------------------------------------------------------------


def _job_line(job: Job) -> str:
    extra = f"  {job.error}" if job.error else ""
    return f"{job.id}  {job.status:<10} {job.kind:<10} {job.provider}/{job.model}{extra}"


def _print_job(job: Job) -> None:
    rows = [
        ("id", job.id), ("status", job.status), ("kind", job.kind),
        ("provider", f"{job.provider} ({job.provider_status or '-'})"), ("model", job.model),
        ("user", job.user_id), ("created", _when(job.created_at)),
        ("completed", _when(job.completed_at)),
    ]  # fmt: skip
    if job.rerun_of:
        rows.append(("rerun of", job.rerun_of))
    if job.error:
        rows.append(("error", job.error))
    for name, value in rows:
        out.print(f"{name:>10}  {value}", markup=False)
    for output in job.outputs:
        out.print(
            f"{'output':>10}  #{output.index} {output.content_type} {output.url}", markup=False
        )
    if job.workflow_url:
        out.print(f"{'workflow':>10}  {job.workflow_url}", markup=False)


def _watch_job(ctx: typer.Context, api: Client, job_id: str, poll: bool) -> None:
    """Follow a job to its end; exit 4 unless it succeeded."""
    options = _options(ctx)
    last: JobUpdate | None = None
    with err.status(f"job {job_id}: waiting", spinner="dots") as spinner:
        for update in api.watch_job(job_id, stream=not poll):
            last = update
            if options.json:
                print(json.dumps(update.model_dump(mode="json")), flush=True)
                continue
            detail = f" ({update.provider_status})" if update.provider_status else ""
            source = "" if update.event_id is None else f"  [event {update.event_id}]"
            out.print(f"{datetime.now():%H:%M:%S}  {update.status}{detail}{source}", markup=False)
            spinner.update(f"job {job_id}: {update.status}{detail}")
    if last is None:
        return
    if not options.json:
        job = api.get_job(job_id)
        _print_job(job)
    if last.status != "succeeded":
        raise typer.Exit(EXIT_NOT_SUCCEEDED)


@jobs_app.command("submit")
def jobs_submit(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="generation, edit, upscale, video or training")],
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="the input's prompt")] = None,
    input_: Annotated[
        str | None, typer.Option("--input", "-i", help="the model input as a JSON object")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="replicate, fal, kie …")] = None,
    model: Annotated[str | None, typer.Option(help="the provider's model")] = None,
    project: Annotated[str | None, typer.Option(help="a project id")] = None,
    node: Annotated[str | None, typer.Option(help="the project node it fills")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="retry-safe: the same key answers with the same job")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="follow it to its end")] = False,
) -> None:
    """Start a job."""
    body = _json_arg(input_, "--input") or {}
    if prompt is not None:
        body["prompt"] = prompt
    if not body:
        fail("give the input: --prompt TEXT and/or --input JSON", EXIT_USAGE)
    with client(ctx) as api:
        job = api.create_job(kind, body, provider=provider, model=model, project_id=project,
                             node_id=node, idempotency_key=idempotency_key)  # fmt: skip
        if watch:
            if not _options(ctx).json:
                out.print(f"submitted {job.id}", markup=False)
            _watch_job(ctx, api, job.id, poll=False)
            return
    emit(ctx, job, lambda: _print_job(job))


@jobs_app.command("get")
def jobs_get(ctx: typer.Context, job_id: str) -> None:
    """One job: status, outputs, error."""
    with client(ctx) as api:
        job = api.get_job(job_id)
    emit(ctx, job, lambda: _print_job(job))


@jobs_app.command("list")
def jobs_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="queued, processing, failed …")] = None,
    kind: Annotated[str | None, typer.Option()] = None,
    project: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, help="how many (newest first)")] = 20,
    all_: Annotated[bool, typer.Option("--all", help="every match, page after page")] = False,
) -> None:
    """Your jobs, newest first (admins: everyone's)."""
    with client(ctx) as api:
        if all_:
            jobs = list(api.iter_jobs(status=status, kind=kind, project_id=project))
        else:
            jobs = []
            for job in api.iter_jobs(status=status, kind=kind, project_id=project,
                                     page_size=min(limit, 100)):  # fmt: skip
                jobs.append(job)
                if len(jobs) >= limit:
                    break

    def text() -> None:
        for job in jobs:
            out.print(_job_line(job), markup=False)
        if not jobs:
            err.print("no jobs")

    emit(ctx, jobs, text)


def _print_batch(ctx: typer.Context, action: str, started: Any) -> None:
    emit(
        ctx,
        started,
        lambda: out.print(
            f"{action} batch {started.batch_id}: {started.matched} jobs matched; follow it with "
            f"`autosync jobs batch {started.batch_id}`",
            markup=False,
        ),
    )


@jobs_app.command("cancel")
def jobs_cancel(
    ctx: typer.Context,
    job_ids: Annotated[list[str] | None, typer.Argument(help="one job, or several")] = None,
    reason: Annotated[str | None, typer.Option(help="recorded on the job")] = None,
    filter_: Annotated[
        list[str] | None,
        typer.Option("--filter", help="cancel every match: KEY=VALUE (status, kind, provider …)"),
    ] = None,
) -> None:
    """Cancel a job (it reaches the provider), or many at once by ids or --filter."""
    filters = _filters(filter_)
    if not job_ids and filters is None:
        fail("name a job id, several, or --filter KEY=VALUE", EXIT_USAGE)
    if job_ids and filters is not None:
        fail("give job ids or --filter, not both", EXIT_USAGE)
    with client(ctx) as api:
        if job_ids and len(job_ids) == 1:
            job = api.cancel_job(job_ids[0], reason=reason)
            emit(ctx, job, lambda: out.print(f"{job.id}: cancel sent ({job.status})"))
            return
        started = api.cancel_jobs(ids=job_ids or None, filter=filters)
    _print_batch(ctx, "cancel", started)


@jobs_app.command("rerun")
def jobs_rerun(
    ctx: typer.Context,
    job_ids: Annotated[list[str] | None, typer.Argument(help="one job, or several")] = None,
    input_: Annotated[
        str | None, typer.Option("--input", "-i", help="one job: a new input (JSON object)")
    ] = None,
    filter_: Annotated[
        list[str] | None, typer.Option("--filter", help="rerun every match: KEY=VALUE")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="one job: follow the new one")
    ] = False,
) -> None:
    """Run a job again as a new job linked to it (same input, or --input), or many by ids or
    --filter."""
    filters = _filters(filter_)
    edited = _json_arg(input_, "--input")
    if not job_ids and filters is None:
        fail("name a job id, several, or --filter KEY=VALUE", EXIT_USAGE)
    if job_ids and filters is not None:
        fail("give job ids or --filter, not both", EXIT_USAGE)
    if edited is not None and (filters is not None or len(job_ids or []) != 1):
        fail("--input edits one job's rerun only", EXIT_USAGE)
    with client(ctx) as api:
        if job_ids and len(job_ids) == 1:
            job = api.rerun_job(job_ids[0], input=edited)
            if watch:
                if not _options(ctx).json:
                    out.print(f"rerun of {job_ids[0]}: {job.id}", markup=False)
                _watch_job(ctx, api, job.id, poll=False)
                return
            emit(ctx, job, lambda: _print_job(job))
            return
        started = api.rerun_jobs(ids=job_ids or None, filter=filters)
    _print_batch(ctx, "rerun", started)


@jobs_app.command("batch")
def jobs_batch(ctx: typer.Context, batch_id: str) -> None:
    """A bulk cancel or rerun's progress."""
    with client(ctx) as api:
        batch = api.get_batch(batch_id)
    emit(
        ctx,
        batch,
        lambda: out.print(
            f"{batch.action} batch {batch.id}: {batch.status}; {batch.done} done, "
            f"{batch.failed} failed, {batch.skipped} skipped of {batch.total}"
            + (f" ({batch.error})" if batch.error else ""),
            markup=False,
        ),
    )


@jobs_app.command("watch")
def jobs_watch(
    ctx: typer.Context,
    job_id: str,
    poll: Annotated[bool, typer.Option(help="poll instead of the live stream")] = False,
) -> None:
    """Follow a job to its end, live; exits 4 unless it succeeded."""
    with client(ctx) as api:
        _watch_job(ctx, api, job_id, poll)


# --- sync runs ------------------------------------------------------------------------------


def _print_run(run: SyncRun) -> None:
    period = f" {run.start_date}..{run.end_date}" if run.start_date else ""
    out.print(f"{run.id}  {run.status}  {run.company_id} {run.mode}{period}", markup=False)
    if run.error_message:
        out.print(f"  error: {run.error_message}", markup=False)
    table = Table("module", "status", "processed", "skipped", "errors", box=None)
    for name, module in run.modules.items():
        table.add_row(name, module.status, str(module.processed), str(module.skipped),
                      str(module.errors))  # fmt: skip
    out.print(table)
    if run.workflow_url:
        out.print(f"  workflow: {run.workflow_url}", markup=False)


def _run_line(update: RunUpdate) -> str:
    if update.kind == "status":
        return f"run {update.status}"
    if update.kind == "module" and update.progress is not None:
        p = update.progress
        return (f"{update.module}: {p.status} processed={p.processed} skipped={p.skipped} "
                f"errors={p.errors}")  # fmt: skip
    if update.log is not None:
        where = f" [{update.log.module}]" if update.log.module else ""
        return f"{update.log.level}{where} {update.log.message}"
    return update.kind


def _watch_run(ctx: typer.Context, api: Client, run_id: str, poll: bool) -> None:
    options = _options(ctx)
    last: RunUpdate | None = None
    with err.status(f"sync run {run_id}", spinner="dots") as spinner:
        for update in api.watch_run(run_id, stream=not poll):
            if update.kind == "status":
                last = update
            if options.json:
                print(json.dumps(update.model_dump(mode="json")), flush=True)
                continue
            line = _run_line(update)
            out.print(f"{datetime.now():%H:%M:%S}  {line}", markup=False)
            spinner.update(f"sync run {run_id}: {line}")
    if not options.json:
        _print_run(api.get_sync_run(run_id))
    if last is not None and last.status != "DONE":
        raise typer.Exit(EXIT_NOT_SUCCEEDED)


@sync_app.command("start")
def sync_start(
    ctx: typer.Context,
    company: Annotated[str, typer.Argument(help="the company's id")],
    mode: Annotated[str, typer.Option(help="incremental or period")] = "incremental",
    month: Annotated[str | None, typer.Option(help="period runs: YYYY-MM")] = None,
    from_: Annotated[
        datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="period start")
    ] = None,
    to: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="period end")] = None,
    module: Annotated[
        list[str] | None, typer.Option("--module", "-m", help="only these modules")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="follow it to its end")] = False,
) -> None:
    """Start a sync run."""
    start: date | None = from_.date() if from_ else None
    end: date | None = to.date() if to else None
    with client(ctx) as api:
        run = api.start_sync_run(company, mode=mode, month=month, start_date=start, end_date=end,
                                 modules=module or None,
                                 idempotency_key=idempotency_key)  # fmt: skip
        if watch:
            if not _options(ctx).json:
                out.print(f"started {run.id}", markup=False)
            _watch_run(ctx, api, run.id, poll=False)
            return
    emit(ctx, run, lambda: _print_run(run))


@sync_app.command("get")
def sync_get(ctx: typer.Context, run_id: str) -> None:
    """One run with its modules' progress."""
    with client(ctx) as api:
        run = api.get_sync_run(run_id)
    emit(ctx, run, lambda: _print_run(run))


@sync_app.command("list")
def sync_list(
    ctx: typer.Context,
    company: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option(help="QUEUED, RUNNING, DONE, FAILED …")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """Runs, newest first."""
    with client(ctx) as api:
        runs = api.list_sync_runs(company_id=company, status=status, limit=limit).items

    def text() -> None:
        for run in runs:
            out.print(f"{run.id}  {run.status:<8} {run.company_id} {run.mode} "
                      f"{_when(run.created_at)}", markup=False)  # fmt: skip

    emit(ctx, runs, text)


@sync_app.command("watch")
def sync_watch(
    ctx: typer.Context,
    run_id: str,
    poll: Annotated[bool, typer.Option(help="poll instead of the live stream")] = False,
) -> None:
    """Follow a run live: status, each module's progress, log lines; exits 4 unless DONE."""
    with client(ctx) as api:
        _watch_run(ctx, api, run_id, poll)


@sync_app.command("logs")
def sync_logs(
    ctx: typer.Context,
    run_id: str,
    level: Annotated[str | None, typer.Option(help="info, warn or error")] = None,
    module: Annotated[str | None, typer.Option()] = None,
) -> None:
    """A run's whole log, oldest first."""
    with client(ctx) as api:
        lines = list(api.iter_logs(run_id, level=level, module=module))

    def text() -> None:
        for line in lines:
            where = f" [{line.module}]" if line.module else ""
            out.print(f"{_when(line.at)}  {line.level:<5}{where} {line.message}", markup=False)

    emit(ctx, lines, text)


@sync_app.command("cancel")
def sync_cancel(ctx: typer.Context, run_id: str) -> None:
    """Stop a run before its next page (what is stored stays)."""
    with client(ctx) as api:
        run = api.cancel_sync_run(run_id)
    emit(ctx, run, lambda: out.print(f"{run.id}: cancel sent ({run.status})", markup=False))


# --- schedules ------------------------------------------------------------------------------


def _schedule_line(schedule: Any) -> str:
    state = "paused" if schedule.paused else "active"
    nxt = _when(schedule.next_runs[0]) if schedule.next_runs and not schedule.paused else "-"
    return f"{schedule.company_id:<16} every {schedule.every_minutes} min  {state:<6}  next {nxt}"


def _schedule_command(action: Callable[[Client, str], Any], done: str) -> Callable[..., None]:
    def command(ctx: typer.Context, company: str) -> None:
        with client(ctx) as api:
            schedule = action(api, company)
        emit(ctx, schedule, lambda: out.print(f"{done}: {_schedule_line(schedule)}", markup=False))

    return command


@schedules_app.command("list")
def schedules_list(ctx: typer.Context) -> None:
    """Every company's schedule."""
    with client(ctx) as api:
        schedules = api.list_schedules()

    def text() -> None:
        for schedule in schedules:
            out.print(_schedule_line(schedule), markup=False)
        if not schedules:
            err.print("no schedules")

    emit(ctx, schedules, text)


@schedules_app.command("create")
def schedules_create(
    ctx: typer.Context,
    company: str,
    every: Annotated[int, typer.Option(min=1, help="minutes between runs")],
    paused: Annotated[bool, typer.Option(help="create it paused")] = False,
) -> None:
    """Run an incremental sync of a company every N minutes."""
    with client(ctx) as api:
        schedule = api.create_schedule(company, every, paused=paused)
    emit(ctx, schedule, lambda: out.print(f"created: {_schedule_line(schedule)}", markup=False))


schedules_app.command("pause", help="Stop starting runs until resumed.")(
    _schedule_command(lambda api, company: api.pause_schedule(company), "paused")
)
schedules_app.command("resume", help="Start runs again.")(
    _schedule_command(lambda api, company: api.resume_schedule(company), "resumed")
)
schedules_app.command("trigger", help="Start a run now (skipped if one is running).")(
    _schedule_command(lambda api, company: api.trigger_schedule(company), "triggered")
)


@schedules_app.command("delete")
def schedules_delete(ctx: typer.Context, company: str) -> None:
    """Remove a company's schedule (runs already started go on)."""
    with client(ctx) as api:
        api.delete_schedule(company)
    emit(ctx, {"deleted": company}, lambda: out.print(f"deleted the schedule of {company}"))


# --- usage ----------------------------------------------------------------------------------


@app.command()
def usage(
    ctx: typer.Context,
    group_by: Annotated[str, typer.Option(help="day, kind, provider or user")] = "day",
    from_: Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD")] = None,
    to: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
) -> None:
    """Jobs and spend, grouped by day, kind, provider or user."""
    with client(ctx) as api:
        report = api.usage(group_by=group_by, from_=from_, to=to)

    def text() -> None:
        body = report.model_dump(mode="json")
        rows = next((v for v in body.values() if isinstance(v, list)), None)
        if not rows or not all(isinstance(r, dict) for r in rows):
            out.print_json(json.dumps(body))
            return
        columns = list(dict.fromkeys(k for r in rows for k in r))
        table = Table(*columns, box=None)
        for row in rows:
            table.add_row(*(str(row.get(c, "")) for c in columns))
        out.print(table)
        for key, value in body.items():
            if not isinstance(value, list):
                out.print(f"{key}: {value}", markup=False)

    emit(ctx, report, text)


# --- keys -----------------------------------------------------------------------------------


@keys_app.command("list")
def keys_list(
    ctx: typer.Context, user: Annotated[str | None, typer.Option(help="one user's keys")] = None
) -> None:
    """Every API key (never the key itself), oldest first."""
    with client(ctx) as api:
        keys = api.list_api_keys(user_id=user).items

    def text() -> None:
        for key in keys:
            state = f"revoked {_when(key.revoked_at)}" if key.revoked_at else "active"
            role = "admin" if key.is_admin else "user"
            out.print(f"{key.id}  {key.user_id:<16} {role:<5}  {state:<26} {key.name or ''}",
                      markup=False)  # fmt: skip

    emit(ctx, keys, text)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="the key's user (created if missing)")],
    name: Annotated[str, typer.Argument(help="what the key is for")],
    admin: Annotated[
        bool | None, typer.Option("--admin/--no-admin", help="a new user's role")
    ] = None,
) -> None:
    """A new key; it is printed this once and never again."""
    with client(ctx) as api:
        created = api.create_api_key(user, name, admin=admin)

    def text() -> None:
        out.print(created.key, markup=False)
        err.print(f"key {created.id} for {created.user_id}: store it now, it is not shown again")

    emit(ctx, created, text)


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: str) -> None:
    """Revoke a key by its id: refused from now on."""
    with client(ctx) as api:
        key = api.revoke_api_key(key_id)
    emit(ctx, key, lambda: out.print(f"{key.id}: revoked ({key.user_id})", markup=False))


def main() -> None:
    app()
