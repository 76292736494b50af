"""What a task will output, decided when it is created: real PNGs, or one small MP4 for video.

The bytes come from `emulators.scaffold.media`, which describes each file by a small spec and
generates it on every download. Outputs follow inputs (`scaffold.inputs`): a video lasts its
`duration`, an upscale is the input image enlarged by `upscale_factor` (2 if unsaid), and an
image model given an input image (`image_urls`) returns it edited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from emulators.scaffold.inputs import FromInput, from_input, requested_video_length
from emulators.scaffold.media import FileKind, FileSpec, clamp_side

MAX_OUTPUTS = 4
LONG_SIDE = 128
# Model names of KIE's market that make videos (e.g. `kling/v2-1-master-text-to-video`, `veo3`).
_VIDEO_HINTS = ("video", "veo", "kling", "sora", "hailuo", "seedance", "runway", "wan/")
_UPSCALE_HINTS = ("upscale", "esrgan")
DEFAULT_SCALE = 2.0
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")


def is_video_model(model: str) -> bool:
    name = model.lower()
    return any(hint in name for hint in _VIDEO_HINTS)


def image_size(payload: dict[str, Any]) -> tuple[int, int]:
    """Explicit `width`/`height`, else KIE's `aspect_ratio` ("16:9", "auto") on a small canvas."""
    if "width" in payload or "height" in payload:
        return clamp_side(payload.get("width"), LONG_SIDE), clamp_side(
            payload.get("height"), LONG_SIDE
        )
    match = _RATIO.match(str(payload.get("aspect_ratio", "")))
    if not match:
        return LONG_SIDE, LONG_SIDE
    across, down = float(match.group(1)), float(match.group(2))
    if across <= 0 or down <= 0:
        return LONG_SIDE, LONG_SIDE
    scale = LONG_SIDE / max(across, down)
    return max(1, round(across * scale)), max(1, round(down * scale))


@dataclass(frozen=True)
class OutputPlan:
    """File name → spec, and the input image the PNGs are made from, once fetched."""

    files: dict[str, FileSpec]
    source: FromInput | None = None


def plan_outputs(
    task_id: str, model: str, payload: dict[str, Any], pad_to: int | None
) -> OutputPlan:
    """One `.mp4` for video models, one `.png` for upscalers, else `num_images` (1 to 4)."""
    width, height = image_size(payload)

    def spec(kind: FileKind, n: int) -> FileSpec:
        return FileSpec(kind=kind, seed=f"{task_id}:{n}", width=width, height=height, pad_to=pad_to)

    if is_video_model(model):
        return OutputPlan(
            {"out-0.mp4": replace(spec("mp4", 0), seconds=requested_video_length(payload))}
        )
    if any(hint in model.lower() for hint in _UPSCALE_HINTS):
        source = from_input(payload, upscale=True, default_scale=DEFAULT_SCALE)
        return OutputPlan({"out-0.png": spec("png", 0)}, source)
    count = payload.get("num_images", payload.get("n", 1))
    if isinstance(count, bool) or not isinstance(count, int):
        count = 1
    count = max(1, min(count, MAX_OUTPUTS))
    files = {f"out-{n}.png": spec("png", n) for n in range(count)}
    return OutputPlan(files, from_input(payload, upscale=False, default_scale=1.0))
