"""API-edge checks of job requests: input limits, model ids that could climb out of their URL
path, and where a Replicate training may push its model."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from core.contracts import JobKind, SubmitRequest
from providers import fal, kie, replicate
from providers.base import ProviderRejected
from providers.inputs import MAX_INPUT_JSON_BYTES, input_limits_error
from providers.registry import job_request_error, model_error

VERSION = "a" * 64


@pytest.mark.parametrize(
    ("payload", "hint"),
    [
        ({"prompt": "x" * 10_001}, "input.prompt: at most 10000 characters"),
        ({"prompt": "ok", "negative_prompt": "y" * 20_000}, "input.negative_prompt"),
        ({"prompt": 5}, "input.prompt must be a string"),
        ({"image": "ftp://example.com/in.png"}, "input.image: URLs must be http or https"),
        ({"image_urls": ["https://a/1", "file:///etc/passwd"]}, "input.image_urls: URLs"),
        ({"image_urls": [f"https://a/{i}" for i in range(17)]}, "input.image_urls: at most 16"),
        ({"a": [f"https://a/{i}" for i in range(9)], "b": [f"https://b/{i}" for i in range(9)]},
         "at most 16 URLs in all"),
        ({"scale": 100}, "input.scale must be between 1 and 10"),
        ({"scale": 0}, "input.scale must be between 1 and 10"),
        ({"num_outputs": 1000}, "input.num_outputs"),
        ({"steps": -1}, "input.steps"),
        ({"duration": "600"}, "input.duration"),
        ({"scale": "big"}, "input.scale must be a number"),
        ({"scale": True}, "input.scale must be a number"),
        ({"guidance": float("nan")}, "finite"),
        ({"prompt": "x", "blob": "y" * (MAX_INPUT_JSON_BYTES + 1)}, "KB of JSON"),
        # Deep enough to exhaust a recursive reader (json, the checks themselves).
        ({"prompt": "x", "a": json.loads("[" * 900 + "]" * 900)}, "nest at most 16 levels"),
        ({"image": {"nested": ["ftp://example.com/x"]}}, "input.image: URLs"),
    ],
)  # fmt: skip
def test_inputs_past_a_limit_are_named(payload: dict[str, Any], hint: str) -> None:
    problem = input_limits_error(payload)
    assert problem is not None and hint in problem, problem


@pytest.mark.parametrize(
    "payload",
    [
        {"prompt": "a fox", "num_outputs": 4, "width": 1024, "height": 768},
        {"image": "https://example.com/in.png", "scale": 4},
        {"image_url": "http://127.0.0.1:9/in.png", "upscale_factor": "2"},
        {"prompt": "see ftp://example.com for the style"},  # text that mentions a URL
        {"image": "data:image/png;base64,AAAA"},
        {"prompt": "x", "seed": "0f3a"},
    ],
)
def test_ordinary_inputs_pass(payload: dict[str, Any]) -> None:
    assert input_limits_error(payload) is None


def test_limits_are_checked_for_every_provider() -> None:
    for provider in ("replicate", "fal", "kie"):
        problem = job_request_error(provider, JobKind.UPSCALE, None, {"image_url": "ftp://x/y"})
        assert problem is not None and "http or https" in problem


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("replicate", "../.."),
        ("replicate", "../../v1/anything"),
        ("replicate", "owner/.."),
        ("replicate", f"../x:{VERSION}"),
        ("fal", "fal-ai/../../v1/anything"),
        ("fal", "../.."),
        ("fal", "fal-ai/flux/."),
        ("kie", "../x"),
        ("kie", "a/.."),
    ],
)
def test_model_ids_with_dot_segments_are_refused(provider: str, model: str) -> None:
    assert model_error(provider, model, JobKind.GENERATION) is not None


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("replicate", "black-forest-labs/flux-schnell"),
        ("replicate", "owner/name.v2"),
        ("replicate", f"owner/name:{VERSION}"),
        ("fal", "fal-ai/flux/dev"),
        ("kie", "google/nano-banana"),
    ],
)
def test_ordinary_model_ids_pass(provider: str, model: str) -> None:
    assert model_error(provider, model, JobKind.GENERATION) is None


async def test_replicate_quotes_the_model_path_and_refuses_dot_segments() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(201, json={"id": "p1", "status": "starting"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = replicate.ReplicateProvider(http, base_url="http://r.test", api_token="t")

        def request(model: str) -> SubmitRequest:
            return SubmitRequest(
                job_id="j1", kind=JobKind.GENERATION, provider="replicate", model=model,
                input={"prompt": "x"}, webhook_url=None, webhook_events=[],
            )  # fmt: skip

        await client.submit(request("acme/flux"))
        assert seen == ["/v1/models/acme/flux/predictions"]
        for model in ("../..", "../../v1/anything", "a/b/c"):
            with pytest.raises(ProviderRejected):
                await client.submit(request(model))
        assert len(seen) == 1


async def test_fal_refuses_a_model_path_that_climbs() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request should be sent: {request.url}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = fal.FalProvider(http, base_url="http://f.test", api_key="k")
        with pytest.raises(ProviderRejected):
            await client.submit(
                SubmitRequest(
                    job_id="j1", kind=JobKind.GENERATION, provider="fal",
                    model="fal-ai/../../v1/anything", input={"prompt": "x"}, webhook_url=None,
                    webhook_events=[],
                )
            )  # fmt: skip


def test_kie_model_check_is_the_registry_one() -> None:
    assert kie.model_reference_error("../x", JobKind.GENERATION) is not None


@pytest.mark.parametrize(
    ("destination", "user", "admin", "hint"),
    [
        ("someone/model", "alice", False, "must be 'autosync/<model name>'"),
        ("autosync/bob-lora", "alice", False, "your models are named 'autosync/alice-<name>'"),
        ("autosync/lora", "alice", False, "autosync/alice-"),
        ("autosync/..", "root", True, "must be 'autosync/<model name>'"),
        ("nope", "root", True, "must be 'autosync/<model name>'"),
    ],
)
def test_a_training_destination_outside_ours_is_refused(
    destination: str, user: str, admin: bool, hint: str
) -> None:
    problem = replicate.destination_error(destination, owner="autosync", user_id=user,
                                          is_admin=admin)  # fmt: skip
    assert problem is not None and hint in problem, problem


def test_a_training_destination_of_ours_passes() -> None:
    ok = replicate.destination_error
    assert ok("autosync/alice-lora", owner="autosync", user_id="alice", is_admin=False) is None
    assert ok("autosync/anything", owner="autosync", user_id="root", is_admin=True) is None


def test_trainings_are_off_without_an_owner() -> None:
    problem = replicate.destination_error("a/b", owner="", user_id="root", is_admin=True)
    assert problem is not None and "REPLICATE_TRAINING_OWNER" in problem
