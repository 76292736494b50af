"""In-process checks of the emulators' shared scaffold: the fault engine's decisions, the
per-job listing, the MP4 length and the input-derived outputs."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Literal

import httpx
import pytest
from PIL import Image, ImageOps
from pydantic import Field
from starlette.requests import Request

from emulators.scaffold.faults import (
    AFTER_CALL,
    AfterCall,
    CallRefused,
    FaultEngine,
    WebhookFaults,
    request_key,
)
from emulators.scaffold.inputs import FromInput, render, requested_scale, requested_video_length
from emulators.scaffold.jobs import ProviderJob, provider_jobs
from emulators.scaffold.media import FileSpec, iter_file, mp4_declared_length
from emulators.scaffold.stats import Stats

Kind = Literal["create", "get"]
CREATE_ONLY: list[Kind] = ["create"]


class Faults(WebhookFaults):
    errors_on: list[Kind] = Field(default_factory=lambda: CREATE_ONLY.copy())


def engine() -> tuple[FaultEngine[Faults], Stats]:
    stats = Stats(("create", "get"))
    return FaultEngine(Faults, stats), stats


def call(faults: FaultEngine[Faults], kind: str = "create", **kwargs: object) -> str:
    """What `admit` made of one call: `ok`, `rate_limited`, `server_error`, `drop`, `late`."""
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    try:
        faults.admit(request, kind, **kwargs)  # type: ignore[arg-type]
    except CallRefused as refused:
        return refused.refusal.outcome
    after: AfterCall | None = request.scope.get(AFTER_CALL)
    if after is None:
        return "ok"
    return "drop" if after.drop else "late"


def test_global_counters_go_in_order_and_only_hit_their_calls() -> None:
    faults, stats = engine()
    faults.replace(Faults(rate_limits=1, server_errors=2, drop_connections=1))
    assert [call(faults, "get")] == ["ok"]  # not in errors_on
    outcomes = [call(faults) for _ in range(5)]
    assert outcomes == ["rate_limited", "server_error", "server_error", "drop", "ok"]
    assert faults.global_faults.server_errors == 0
    assert stats.snapshot()["faults"]["server_errors"] == 2


@pytest.mark.parametrize(
    ("switch", "rate", "outcome", "every"),
    [
        ("rate_limit_rate", 0.5, "rate_limited", 2),
        ("server_error_rate", 0.25, "server_error", 4),
        ("drop_connection_rate", 1 / 3, "drop", 3),
    ],
)
def test_rates_are_spread_evenly_so_counts_are_exact(
    switch: str, rate: float, outcome: str, every: int
) -> None:
    faults, _ = engine()
    faults.replace(Faults.model_validate({switch: rate}))
    outcomes = [call(faults) for _ in range(every * 5)]
    assert outcomes.count(outcome) == 5
    assert [n for n, found in enumerate(outcomes, 1) if found == outcome][:2] == [every, 2 * every]


def test_per_job_create_switches_count_per_identical_request_then_on_the_job() -> None:
    faults, _ = engine()
    specific = Faults.model_validate({"server_errors": 1, "errors_on": ["create", "get"]})
    key = request_key("/create", {"seed": 1})
    assert [call(faults, key=key, specific=specific) for _ in range(2)] == ["server_error", "ok"]
    other = request_key("/create", {"seed": 2})
    assert call(faults, key=other, specific=specific) == "server_error"  # its own count
    job = faults.for_job(specific)
    assert [call(faults, "get", job=job) for _ in range(2)] == ["server_error", "ok"]
    # A job's own switch shields it from the global one it set explicitly.
    faults.replace(Faults(server_errors=5))
    assert call(faults, key=request_key("x"), specific=Faults(server_errors=0)) == "ok"
    assert call(faults) == "server_error"


def test_latency_applies_to_admitted_calls_and_take_counts_down() -> None:
    faults, _ = engine()
    faults.replace(Faults(latency_seconds=0.5))
    assert call(faults) == "late" and call(faults, "get") == "ok"
    # `take`: per identical request where the job set the switch, else the global count.
    specific = Faults(duplicate_webhooks=1)
    assert [faults.take("duplicate_webhooks", "k", specific) for _ in range(2)] == [True, False]
    faults.replace(Faults(duplicate_webhooks=1))
    assert [faults.take("duplicate_webhooks", "k", None) for _ in range(2)] == [True, False]


def test_provider_jobs_are_listed_and_counted_per_app_job() -> None:
    jobs = [
        ProviderJob("p1", "http://h/hook?job_id=a&token=t", "succeeded", False),
        ProviderJob("p2", "http://h/hook?job_id=a", "canceled", True),
        ProviderJob("p3", "http://h/hook?job_id=b", "processing", False),
        ProviderJob("p4", None, "processing", False),
    ]
    one = provider_jobs(jobs, "a")
    assert one["count"] == 2 and [j["id"] for j in one["provider_jobs"]] == ["p1", "p2"]
    assert provider_jobs(jobs, "nobody") == {"job_id": "nobody", "count": 0, "provider_jobs": []}
    assert provider_jobs(jobs, None)["counts"] == {"a": 2, "b": 1}


def test_a_video_lasts_what_its_input_asks() -> None:
    as_text, as_number = {"duration": "10"}, {"duration": 6.5}  # what a video input asks
    assert requested_video_length(as_text) == 10
    assert requested_video_length(as_number) == 6.5
    assert requested_video_length({"num_frames": 48, "fps": 16}) == 3
    assert requested_video_length({"prompt": "x"}) is None
    video = b"".join(iter_file(FileSpec("mp4", "s", seconds=7.25)))
    assert mp4_declared_length(video) == 7.25
    assert video[4:8] == b"ftyp"
    assert mp4_declared_length(b"".join(iter_file(FileSpec("mp4", "s")))) == 5.0  # the default


def png(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 20 % 256, y * 40 % 256, 90) for y in range(height) for x in range(width)])
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_upscale_and_edit_are_made_from_the_input_image() -> None:
    source = png(10, 5)
    url = "data:image/png;base64," + base64.b64encode(source).decode()
    files = {"out.png": FileSpec("png", "s"), "clip.mp4": FileSpec("mp4", "s")}
    assert requested_scale({"upscale_factor": "3"}, 2) == 3 and requested_scale({}, 4) == 4

    async def both() -> tuple[dict[str, FileSpec], dict[str, FileSpec], dict[str, object]]:
        async with httpx.AsyncClient() as http:
            upscaled, _ = await render(http, files, FromInput(url, "upscale", 3))
            edited, _ = await render(http, files, FromInput(url, "edit"))
            _, failed = await render(http, files, FromInput("data:,not-base64!", "edit"))
            return upscaled, edited, failed

    upscaled, edited, failed = asyncio.run(both())
    original = Image.open(io.BytesIO(source)).convert("RGB")
    bigger = Image.open(io.BytesIO(b"".join(iter_file(upscaled["out.png"]))))
    assert bigger.size == (30, 15) == (upscaled["out.png"].width, upscaled["out.png"].height)
    assert bigger.tobytes() == original.resize((30, 15), Image.Resampling.LANCZOS).tobytes()
    changed = Image.open(io.BytesIO(b"".join(iter_file(edited["out.png"]))))
    assert changed.size == original.size
    assert changed.tobytes() == ImageOps.invert(original).tobytes() != original.tobytes()
    assert upscaled["clip.mp4"] == files["clip.mp4"]  # only the images follow the input
    assert failed["type"] == "input_unavailable"
