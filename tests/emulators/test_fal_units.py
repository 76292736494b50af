"""Pieces of the fal emulator without a server: model ids, output plans, signing, stats."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from emulators.fal.api import app_id_of, classify
from emulators.fal.outputs import plan, with_urls
from emulators.fal.signing import KeyRing, signed_message
from providers.fal import public_keys
from providers.fal import signed_message as provider_signed_message

SEED = hashlib.sha256(b"unit").hexdigest()


@pytest.mark.parametrize(
    ("path", "app"),
    [
        ("fal-ai/flux/dev", "fal-ai/flux"),
        ("fal-ai/flux", "fal-ai/flux"),
        ("comfy/acme/flow/sub", "comfy/acme/flow"),
        ("fal-ai", None),
        ("fal-ai/flu x", None),
    ],
)
def test_app_ids(path: str, app: str | None) -> None:
    assert app_id_of(path) == app


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/fal-ai/flux/dev", "submit"),
        ("GET", "/fal-ai/flux/requests/r1/status", "status"),
        ("GET", "/fal-ai/flux/requests/r1", "result"),
        ("PUT", "/fal-ai/flux/requests/r1/cancel", "cancel"),
        ("GET", "/files/r1/image-0.png", "file"),
        ("GET", "/.well-known/jwks.json", "jwks"),
        ("GET", "/_emulator/stats", None),
        ("GET", "/elsewhere", "other"),
    ],
)
def test_request_kinds_counted_in_stats(method: str, path: str, kind: str | None) -> None:
    assert classify(method, path) == kind


def test_image_plans_keep_the_aspect_ratio_and_count() -> None:
    output = plan(
        "r",
        "fal-ai/flux/dev",
        {"num_images": 9, "image_size": {"width": 2048, "height": 1024}},
        None,
    )
    assert len(output.files) == 4  # capped
    urls = {name: f"https://x/{name}" for name in output.files}
    filled = with_urls(output.payload, urls, output.files)
    first = filled["images"][0]
    assert (first["width"], first["height"]) == (256, 128)
    assert first["url"] == "https://x/image-0.png" and "name" not in first


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("fal-ai/kling-video/v2/master/text-to-video", "video"),
        ("fal-ai/veo3", "video"),
        ("fal-ai/esrgan", "image"),
        ("fal-ai/flux-lora-fast-training", "diffusers_lora_file"),
        ("fal-ai/flux/schnell", "images"),
    ],
)
def test_output_shape_follows_the_model(model: str, key: str) -> None:
    assert key in plan("r", model, {}, None).payload


def test_signatures_verify_with_the_published_key_and_the_providers_message() -> None:
    ring = KeyRing.from_seed_hex(SEED)
    body = b'{"request_id":"r"}'
    assert signed_message("r", "u", 1, body) == provider_signed_message("r", "u", "1", body)
    [public] = public_keys(ring.jwks())
    public.verify(
        bytes.fromhex(ring.current.sign("r", "u", 1, body)), signed_message("r", "u", 1, body)
    )

    old = ring.current
    ring.rotate(keep_old=True)
    assert len(ring.jwks()["keys"]) == 2 and ring.current is not old
    ring.rotate(keep_old=False)
    assert [k["kid"] for k in ring.jwks()["keys"]] == [ring.current.kid]
    assert isinstance(public, Ed25519PublicKey)
