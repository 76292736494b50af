"""A media job's place in Temporal's task queues: its priority, then fair between users."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from core.jobs.start import queue_controls, task_priority
from core.models import Job
from core.settings import Settings
from devstack.stack import DEV_SERVER_TUNING
from tests.workflows.test_media_job import job

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("priority,key", [(0, 2), (1, 3), (2, 4)])
def test_interactive_jobs_go_before_the_default_and_batch_after_it(priority: int, key: int) -> None:
    # 3 is what every other workflow gets: a default job shares their level.
    assert task_priority(replace(job(), priority=priority)).priority_key == key


def test_each_user_is_a_fairness_key_of_at_most_64_bytes() -> None:
    assert task_priority(replace(job(), user_id="alice")).fairness_key == "alice"
    long = task_priority(replace(job(), user_id="ü" * 40)).fairness_key
    other = task_priority(replace(job(), user_id="ü" * 41)).fairness_key
    assert long is not None and other is not None
    assert len(long.encode()) <= 64 and long != other  # hashed, still one key per user


def test_devstack_and_compose_turn_fairness_on() -> None:
    flags = " ".join(DEV_SERVER_TUNING)
    assert "matching.enableFairness=true" in flags and "matching.useNewMatcher=true" in flags
    config = yaml.safe_load((ROOT / "deploy/temporal/dynamicconfig.yaml").read_text())
    assert config["matching.enableFairness"][0]["value"] is True
    assert config["matching.useNewMatcher"][0]["value"] is True


@pytest.mark.parametrize("share,reserve", [(0.2, 2), (0.0, 0)])
def test_a_capped_providers_line_keeps_its_reserve_for_newcomers(
    share: float, reserve: int
) -> None:
    settings = Settings(provider_max_active={"replicate": 10}, provider_fair_reserve=share)
    row = Job(id="j1", user_id="alice", kind="generation", provider="replicate", metadata_={})
    limits = queue_controls(row, settings)["admission"]
    assert (limits.max_active, limits.max_per_user, limits.reserve) == (10, 20, reserve)
