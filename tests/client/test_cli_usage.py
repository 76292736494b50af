"""The CLI's own checks, before any request: what it refuses, with which message and exit code
(the commands against a real API: tests/e2e/test_cli.py)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from api.schemas.job_batches import BulkJobFilter
from autosync_client.cli import EXIT_UNREACHABLE, EXIT_USAGE, _filters, app

# Nothing listens on port 9: a command that got past its checks would exit 3 instead.
ENV = {"AUTOSYNC_URL": "http://127.0.0.1:9", "AUTOSYNC_API_KEY": "k", "COLUMNS": "200"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "submit", "generation"], "--prompt TEXT and/or --input JSON"),
        (["jobs", "submit", "generation", "-i", "{oops"], "--input: not JSON"),
        (["jobs", "submit", "generation", "-i", "[1]"], "--input: expected a JSON object"),
        (["jobs", "cancel"], "name a job id, several, or --filter"),
        (["jobs", "cancel", "j1", "--filter", "status=queued"], "ids or --filter, not both"),
        (["jobs", "cancel", "--filter", "queued"], "expected KEY=VALUE"),
        (["jobs", "rerun", "a", "b", "-i", "{}"], "--input edits one job's rerun only"),
    ],
)
def test_bad_usage_exits_2_with_what_to_fix(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args, env=ENV)
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in result.output


def test_no_key_and_no_api() -> None:
    runner = CliRunner()
    no_key = runner.invoke(app, ["me"], env={**ENV, "AUTOSYNC_API_KEY": ""})
    assert no_key.exit_code == EXIT_USAGE and "AUTOSYNC_API_KEY" in no_key.output
    down = runner.invoke(app, ["jobs", "get", "j1"], env=ENV)
    assert down.exit_code == EXIT_UNREACHABLE
    assert "could not reach http://127.0.0.1:9" in down.output


def test_filters_are_what_the_bulk_endpoint_accepts() -> None:
    """`--filter` pairs become the body's filter as the API's own model reads it: the list
    fields as lists (sent as strings they were a 422), added up when given twice or with commas."""
    built = _filters(
        ["status=queued", "kind=video", "status=failed,canceled", "provider=replicate",
         "created_after=2026-11-30T00:00:00Z", "project_id=p1"]
    )  # fmt: skip
    parsed = BulkJobFilter.model_validate(built)
    assert [s.value for s in parsed.status] == ["queued", "failed", "canceled"]
    assert [k.value for k in parsed.kind] == ["video"]
    assert parsed.provider == ["replicate"] and parsed.project_id == "p1"
    assert parsed.created_after is not None and parsed.created_after.day == 30
