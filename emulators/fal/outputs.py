"""What a request will output, decided at submit: fal's result shapes with emulator-served files.

Image models answer `{"images": [{url, content_type, width, height}], "seed", ...}`, upscalers
`{"image": {...}}`, video models `{"video": {url, content_type, file_name, file_size}}` and
trainers `{"diffusers_lora_file": {...}}` (a tar standing in for the weights). File URLs (and
each file's size) are filled in by `with_urls` once the request id and base URL are known.

Outputs follow inputs (`scaffold.inputs`): a video lasts its `duration`, an upscale is the input
image enlarged by `scale` (esrgan's default 2), and an image model given an input image returns
it edited; the sizes in the result are those of the files made.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

from emulators.scaffold.inputs import FromInput, from_input, requested_video_length
from emulators.scaffold.media import MAX_SIDE, FileKind, FileSpec, file_size

MAX_IMAGES = 4
# fal's `image_size` presets (flux and most image models).
IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
DEFAULT_IMAGE_SIZE = "landscape_4_3"
_VIDEO_WORDS = ("video", "kling", "veo", "hailuo", "luma", "ltx")
_UPSCALE_WORDS = ("upscale", "esrgan", "clarity")
_TRAINING_WORDS = ("training", "trainer")
_URL = "<url>"  # placeholder replaced by the file's URL
DEFAULT_SCALE = 2.0


@dataclass(frozen=True)
class OutputPlan:
    """`payload` holds `{"url": _URL, "name": ...}` where URLs go; `files` maps names to bytes."""

    payload: dict[str, Any]
    files: dict[str, FileSpec]
    source: FromInput | None = None


def _requested_size(value: Any) -> tuple[int, int]:
    if isinstance(value, str) and value in IMAGE_SIZES:
        return IMAGE_SIZES[value]
    if isinstance(value, dict):
        width, height = value.get("width"), value.get("height")
        if _positive_int(width) and _positive_int(height):
            return width, height
    return IMAGE_SIZES[DEFAULT_IMAGE_SIZE]


def _positive_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _scaled(width: int, height: int) -> tuple[int, int]:
    """The size actually generated: the requested aspect ratio, at most MAX_SIDE a side."""
    scale = min(1.0, MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def seed_of(request_id: str, payload: dict[str, Any]) -> int:
    seed = payload.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:4], "big")


def plan(request_id: str, model_id: str, payload: dict[str, Any], pad_to: int | None) -> OutputPlan:
    name = model_id.lower()
    seed = seed_of(request_id, payload)
    width, height = _scaled(*_requested_size(payload.get("image_size")))

    def spec(kind: FileKind, n: int) -> FileSpec:
        return FileSpec(kind, f"{request_id}:{n}", width=width, height=height, pad_to=pad_to)

    if any(word in name for word in _TRAINING_WORDS):
        files = {"lora.tar": spec("tar", 0)}
        return OutputPlan(
            payload={"diffusers_lora_file": _file_object("lora.tar", files)}, files=files
        )
    if any(word in name for word in _VIDEO_WORDS):
        files = {"output.mp4": replace(spec("mp4", 0), seconds=requested_video_length(payload))}
        return OutputPlan(
            payload={"video": _file_object("output.mp4", files), "seed": seed}, files=files
        )
    if any(word in name for word in _UPSCALE_WORDS):
        files = {"upscaled.png": spec("png", 0)}
        image = _file_object("upscaled.png", files) | {"width": width, "height": height}
        source = from_input(payload, upscale=True, default_scale=DEFAULT_SCALE)
        return OutputPlan(payload={"image": image}, files=files, source=source)
    count = payload.get("num_images", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        count = 1
    files = {f"image-{n}.png": spec("png", n) for n in range(max(1, min(count, MAX_IMAGES)))}
    images = [
        {"url": _URL, "name": n, "content_type": "image/png", "width": width, "height": height}
        for n in files
    ]
    return OutputPlan(
        payload={
            "images": images,
            "seed": seed,
            "has_nsfw_concepts": [False] * len(files),
            "prompt": str(payload.get("prompt", "")),
        },
        files=files,
        source=from_input(payload, upscale=False, default_scale=1.0),
    )


def _file_object(name: str, files: dict[str, FileSpec]) -> dict[str, Any]:
    spec = files[name]
    return {
        "url": _URL,
        "name": name,
        "content_type": spec.content_type,
        "file_name": name,
        "file_size": file_size(spec),
    }


def with_urls(value: Any, url_for: dict[str, str], files: dict[str, FileSpec]) -> Any:
    """`value` with every placeholder file object given its URL (and its `name` removed), and
    its size and dimensions as the file now has them."""
    if isinstance(value, list):
        return [with_urls(item, url_for, files) for item in value]
    if isinstance(value, dict):
        if value.get("url") == _URL and value.get("name") in url_for:
            name = str(value["name"])
            found = {k: v for k, v in value.items() if k != "name"} | {"url": url_for[name]}
            spec = files[name]
            if "file_size" in found:
                found["file_size"] = file_size(spec)
            if "width" in found:
                found.update(width=spec.width, height=spec.height)
            return found
        return {key: with_urls(item, url_for, files) for key, item in value.items()}
    return value
