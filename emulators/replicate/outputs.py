"""What a job will output, decided when it is created (so partial outputs are a prefix of it).

Outputs follow inputs (`scaffold.inputs`): a video lasts its `duration`, an upscale is the
input image enlarged by `scale` (real-esrgan's default 4), and an image model given an input
image returns it edited.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from emulators.replicate.records import derived_version
from emulators.scaffold.inputs import FromInput, from_input, requested_video_length
from emulators.scaffold.media import FileKind, FileSpec, clamp_side

MAX_OUTPUTS = 4
DEFAULT_SIDE = 128
DEFAULT_SCALE = 4.0


@dataclass(frozen=True)
class OutputPlan:
    """`final` holds file names where URLs go; `files` maps those names to their bytes' spec;
    `source` is the input image the PNGs are made from, once fetched."""

    final: Any
    files: dict[str, FileSpec]
    source: FromInput | None = None


def plan_prediction(
    job_id: str, model: str, payload: dict[str, Any], pad_to: int | None
) -> OutputPlan:
    """Video models give one .mp4, upscalers one .png, anything else `num_outputs` .png files."""
    name = model.lower()
    width = clamp_side(payload.get("width"), DEFAULT_SIDE)
    height = clamp_side(payload.get("height"), DEFAULT_SIDE)

    def spec(kind: FileKind, n: int) -> FileSpec:
        return FileSpec(kind=kind, seed=f"{job_id}:{n}", width=width, height=height, pad_to=pad_to)

    if "video" in name:
        video = replace(spec("mp4", 0), seconds=requested_video_length(payload))
        return OutputPlan(final="out-0.mp4", files={"out-0.mp4": video})
    if "upscale" in name or "esrgan" in name:
        source = from_input(payload, upscale=True, default_scale=DEFAULT_SCALE)
        return OutputPlan(final="out-0.png", files={"out-0.png": spec("png", 0)}, source=source)
    count = payload.get("num_outputs", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        count = 1
    count = max(1, min(count, MAX_OUTPUTS))
    names = [f"out-{n}.png" for n in range(count)]
    files = {n: spec("png", i) for i, n in enumerate(names)}
    source = from_input(payload, upscale=False, default_scale=1.0)
    return OutputPlan(final=names, files=files, source=source)


def plan_training(job_id: str, destination: str, pad_to: int | None) -> OutputPlan:
    """A training outputs the new version of `destination` and a tar of its weights."""
    return OutputPlan(
        final={"version": f"{destination}:{derived_version(job_id)}", "weights": "out-0.tar"},
        files={"out-0.tar": FileSpec(kind="tar", seed=job_id, pad_to=pad_to)},
    )


def with_urls(final: Any, url_for: dict[str, str]) -> Any:
    """`final` with every file name replaced by its URL."""
    if isinstance(final, str):
        return url_for.get(final, final)
    if isinstance(final, list):
        return [with_urls(item, url_for) for item in final]
    if isinstance(final, dict):
        return {key: with_urls(value, url_for) for key, value in final.items()}
    return final
