"""The job mix every system of the peers bench gets: the same jobs, the same lost webhooks.

A phase's jobs come from one seeded generator, so each system sees the same processing times
and loses the webhooks of the same jobs. The emulator plays both through the per-prediction
`input["_emulator"]` switches (`processing_seconds`, `drop_webhooks`), which every system
passes through to Replicate untouched.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

PROMPT_PREFIX = "peers "
# Provider-side run time of a job: spread so completions don't arrive in lockstep.
PROCESSING_SECONDS = (0.3, 3.0)


@dataclass(frozen=True)
class JobSpec:
    key: str  # the client's request key (Idempotency-Key); in the prompt, so the provider has it
    processing_seconds: float
    webhook_lost: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def input(self) -> dict[str, Any]:
        faults: dict[str, Any] = {"processing_seconds": self.processing_seconds, **self.extra}
        if self.webhook_lost:
            faults["drop_webhooks"] = True
        return {"prompt": f"{PROMPT_PREFIX}{self.key}", "_emulator": faults}


def key_of(prompt: Any) -> str | None:
    """The request key a prediction's prompt carries, or None for another prompt."""
    if isinstance(prompt, str) and prompt.startswith(PROMPT_PREFIX):
        return prompt[len(PROMPT_PREFIX) :]
    return None


def job_mix(label: str, count: int, loss: float, seed: int) -> list[JobSpec]:
    """`count` jobs keyed `{label}-{n}`; exactly round(loss * count) of them lose their webhook."""
    rng = random.Random(f"{seed}:{label}:{count}:{loss}")
    lost = set(rng.sample(range(count), round(loss * count)))
    low, high = PROCESSING_SECONDS
    return [
        JobSpec(
            key=f"{label}-{n:05d}",
            processing_seconds=round(rng.uniform(low, high), 3),
            webhook_lost=n in lost,
        )
        for n in range(count)
    ]
