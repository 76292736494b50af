"""The worker's collector settings: startup's objects frozen out of every collection. Checked
in a fresh interpreter (freezing this one would keep every test's garbage alive)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CODE = """
import gc, json
from core.gc_tuning import tune_for_server
before, thresholds = gc.get_freeze_count(), gc.get_threshold()
tune_for_server()
print(json.dumps({"before": before, "after": gc.get_freeze_count(),
                  "thresholds": [thresholds, gc.get_threshold()]}))
"""


def test_startup_objects_are_frozen_and_the_thresholds_kept() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["before"] == 0 and seen["after"] > 1000
    before, after = seen["thresholds"]
    assert before == after  # higher ones let finished workflows' sandboxes pile up


def test_the_worker_tunes_its_collector_once_its_workers_run() -> None:
    source = (ROOT / "worker.py").read_text()
    assert "tune_for_server()" in source.split("enter_async_context(worker)", 1)[1]


def test_pull_batches_raise_the_thresholds_while_any_runs() -> None:
    import gc

    from core.gc_tuning import PULL_THRESHOLDS, fewer_young_collections

    found = gc.get_threshold()
    with fewer_young_collections():
        assert gc.get_threshold() == PULL_THRESHOLDS
        with fewer_young_collections():  # batches overlap
            pass
        assert gc.get_threshold() == PULL_THRESHOLDS  # the other batch still runs
    assert gc.get_threshold() == found
    try:
        with fewer_young_collections():
            raise RuntimeError("a failed batch")
    except RuntimeError:
        pass
    assert gc.get_threshold() == found
