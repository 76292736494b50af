"""What a job's input must hold for its kind, and the limits every input keeps, checked at the
API edge before anything starts.

Each provider module lists the inputs its default models cannot do without (`REQUIRED_INPUT`),
by the names those models use: a prompt is `prompt` everywhere, a source image is `image` at
Replicate, `image_url` at fal and `image_urls` at KIE.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from core.contracts import JobKind

# Per kind, groups of alternative names: each group needs one non-empty value.
RequiredInput = dict[JobKind, list[tuple[str, ...]]]


def _given(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, str) and v.strip() for v in value)
    return False


def missing_input(kind: JobKind, payload: Mapping[str, Any], required: RequiredInput) -> str | None:
    """What the input lacks for `kind`, or None: "edit jobs need a non-empty input.image_url"."""
    for names in required.get(kind, []):
        if not any(_given(payload.get(name)) for name in names):
            return f"{kind.value} jobs need a non-empty input.{' or input.'.join(names)}"
    return None


# --- limits every job input keeps, whatever its provider ---------------------------------------

# A model id's path segment: letters, digits, `_`, `.` and `-`, but never dots alone, which a
# URL would read as "this folder" or "the parent folder" (`../../v1/...` climbing out of the
# model's path on the provider's host, with our key).
MODEL_SEGMENT = r"(?!\.+(?:[/:]|$))[\w.-]+"

# The JSON of an input travels in Temporal payloads (2 MB each): kept well under that.
MAX_INPUT_JSON_BYTES = 256 * 1024
MAX_PROMPT_CHARS = 10_000
MAX_INPUT_URLS = 16
# Inputs are a few levels deep; a deeper one is only there to exhaust a recursive reader.
MAX_INPUT_DEPTH = 16
PROMPT_FIELDS = ("prompt", "negative_prompt")
# Numeric fields the default models know, and the values that make sense for them: the
# provider checks them too, but a huge `num_outputs` or `steps` costs before it fails there.
NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    "scale": (1, 10),
    "upscale_factor": (1, 8),
    "num_outputs": (1, 8),
    "num_images": (1, 8),
    "n": (1, 8),
    "width": (16, 8192),
    "height": (16, 8192),
    "duration": (1, 60),
    "num_frames": (1, 1000),
    "fps": (1, 120),
    "steps": (1, 10_000),
    "num_inference_steps": (1, 200),
    "guidance": (0, 100),
    "guidance_scale": (0, 100),
    "output_quality": (0, 100),
    "batch_size": (1, 64),
    "lora_rank": (1, 1024),
    "learning_rate": (0, 1),
}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _number(value: Any) -> float | None:
    """`value` as a number when it is one (or a numeric string, as fal's `"5"`), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _leaves(value: Any) -> list[Any]:
    """The scalars inside `value` (lists and objects opened, without recursion)."""
    found: list[Any] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, dict):
            pending.extend(reversed(list(item.values())))
        else:
            found.append(item)
    return found


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (a scalar: 0), without recursion."""
    deepest = 0
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_INPUT_DEPTH:
            break
        pending.extend((child, depth + 1) for child in children)
    return deepest


def input_limits_error(payload: Mapping[str, Any]) -> str | None:
    """Which limit the input breaks, naming the field, or None (any provider, any kind)."""
    if _depth(dict(payload)) > MAX_INPUT_DEPTH:
        return f"input: lists and objects nest at most {MAX_INPUT_DEPTH} levels deep"
    leaves = _leaves(dict(payload))
    if any(isinstance(leaf, float) and not math.isfinite(leaf) for leaf in leaves):
        return "input: numbers must be finite (no NaN or Infinity)"
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_INPUT_JSON_BYTES:
        return (
            f"input: at most {MAX_INPUT_JSON_BYTES // 1024} KB of JSON (this one is {size} bytes)"
        )
    for name in PROMPT_FIELDS:
        value = payload.get(name)
        if value is not None and not isinstance(value, str):
            return f"input.{name} must be a string"
        if isinstance(value, str) and len(value) > MAX_PROMPT_CHARS:
            return f"input.{name}: at most {MAX_PROMPT_CHARS} characters (got {len(value)})"
    for name, (low, high) in NUMERIC_RANGES.items():
        if name not in payload:
            continue
        number = _number(payload[name])
        if number is None:
            return f"input.{name} must be a number"
        if not low <= number <= high:
            return f"input.{name} must be between {low:g} and {high:g} (got {payload[name]!r})"
    total = 0
    for name, value in payload.items():
        if name in PROMPT_FIELDS:
            continue  # text, even when it quotes a URL
        urls = [leaf for leaf in _leaves(value) if isinstance(leaf, str) and _URL.match(leaf)]
        for url in urls:
            if not url.lower().startswith(("http://", "https://")):
                scheme = url.split(":", 1)[0]
                return f"input.{name}: URLs must be http or https, not {scheme}:// ({url[:100]!r})"
        if len(urls) > MAX_INPUT_URLS:
            return f"input.{name}: at most {MAX_INPUT_URLS} URLs (got {len(urls)})"
        total += len(urls)
    if total > MAX_INPUT_URLS:
        return f"input: at most {MAX_INPUT_URLS} URLs in all (got {total})"
    return None
