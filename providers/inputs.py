"""What a job's input must hold for its kind, checked at the API edge before anything starts.

Each provider module lists the inputs its default models cannot do without (`REQUIRED_INPUT`),
by the names those models use: a prompt is `prompt` everywhere, a source image is `image` at
Replicate, `image_url` at fal and `image_urls` at KIE.
"""

from __future__ import annotations

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
