"""Outputs that follow their inputs: what a job's input asks of its output files.

- An upscale returns its input image enlarged by the input's scale (`scale`, `upscale_factor`),
  an edit returns its input image visibly changed (colours inverted), each as a PNG;
- a video lasts the `duration` asked for (seconds, `"5"` or `"5s"`; or `num_frames` / `fps`).

The input image is fetched when the job is created (http(s) or a `data:` URL, redirects
followed, at most `MAX_INPUT_BYTES`, `FETCH_TIMEOUT_SECONDS`); a job that can't fetch or read
it keeps the generated picture and says why in its history (`input_unavailable`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx
from PIL import Image, ImageOps

from emulators.scaffold.media import MAX_VIDEO_SECONDS, FileSpec

# Input keys that name the image a job works on, as the providers' models call them.
IMAGE_KEYS = ("image", "input_image", "image_url", "image_urls", "init_image")
SCALE_KEYS = ("scale", "upscale_factor")
MAX_SCALE = 8.0
MAX_OUTPUT_SIDE = 4096
MAX_INPUT_BYTES = 20 * 2**20
FETCH_TIMEOUT_SECONDS = 10.0
DEFAULT_FPS = 24.0
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$")

Operation = Literal["upscale", "edit"]


@dataclass(frozen=True)
class FromInput:
    """Made from the job's input image: enlarged by `scale`, or edited."""

    url: str
    operation: Operation
    scale: float = 1.0


def input_image_url(payload: dict[str, Any]) -> str | None:
    """The first image URL the input names, if any."""
    for key in IMAGE_KEYS:
        value = payload.get(key)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, str) and value.startswith(("http://", "https://", "data:")):
            return value
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _NUMBER.match(value)):
        return float(match.group(1))
    return None


def requested_scale(payload: dict[str, Any], default: float) -> float:
    """How much an upscale enlarges: the input's `scale` / `upscale_factor`, 1 to MAX_SCALE."""
    for key in SCALE_KEYS:
        found = _number(payload.get(key))
        if found is not None and found > 0:
            return max(1.0, min(found, MAX_SCALE))
    return default


def requested_video_length(payload: dict[str, Any]) -> float | None:
    """How long a video should last: `duration`, else `num_frames` at `fps`; None if unsaid."""
    seconds = _number(payload.get("duration"))
    if seconds is None:
        frames = _number(payload.get("num_frames"))
        fps = _number(payload.get("fps")) or DEFAULT_FPS
        seconds = frames / fps if frames else None
    if seconds is None or seconds <= 0:
        return None
    return min(seconds, MAX_VIDEO_SECONDS)


def from_input(payload: dict[str, Any], *, upscale: bool, default_scale: float) -> FromInput | None:
    """What an image job makes of its input image (None: it names none)."""
    url = input_image_url(payload)
    if url is None:
        return None
    if upscale:
        return FromInput(url, "upscale", requested_scale(payload, default_scale))
    return FromInput(url, "edit")


async def render(
    client: httpx.AsyncClient, files: dict[str, FileSpec], source: FromInput
) -> tuple[dict[str, FileSpec], dict[str, Any]]:
    """`files` with every PNG made from the input image, and a history entry saying how."""
    try:
        raw = await _fetch(client, source.url)
        png, width, height = await asyncio.to_thread(_derive, raw, source)
    except Exception as exc:  # any input we can't use leaves the generated picture
        error = f"{type(exc).__name__}: {exc}"
        return files, {"type": "input_unavailable", "error": error, "time": time.time()}
    rendered = {
        name: replace(spec, image=png, width=width, height=height) if spec.kind == "png" else spec
        for name, spec in files.items()
    }
    entry: dict[str, Any] = {"type": "input_rendered", "operation": source.operation}
    entry.update(scale=source.scale, width=width, height=height, time=time.time())
    return rendered, entry


async def _fetch(client: httpx.AsyncClient, url: str) -> bytes:
    if url.startswith("data:"):
        _, _, encoded = url.partition(",")
        try:
            return base64.b64decode(encoded, validate=True)[: MAX_INPUT_BYTES + 1]
        except binascii.Error as exc:
            raise ValueError("the data: URL is not base64") from exc
    async with asyncio.timeout(FETCH_TIMEOUT_SECONDS):
        async with client.stream("GET", url, follow_redirects=True) as response:
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_INPUT_BYTES:
                    raise ValueError(f"the input image is over {MAX_INPUT_BYTES} bytes")
            return bytes(body)


def _derive(raw: bytes, source: FromInput) -> tuple[bytes, int, int]:
    """The output PNG and its size: the input enlarged by the scale, or visibly changed."""
    with Image.open(io.BytesIO(raw)) as opened:
        image = opened.convert("RGB")
    if source.operation == "upscale":
        scale = min(source.scale, MAX_OUTPUT_SIDE / max(image.width, image.height))
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    else:
        image = ImageOps.invert(image)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue(), image.width, image.height
