"""The cyclic garbage collector, set for a long-running server process.

Measured on a pull cycle (1,000 clients x 50 records, one worker process; the harness ran the
pull activities outside Temporal): the collector took ~1.0 s of the cycle's ~4.3 CPU-seconds.
Most of it was full collections, which walk every object the process made at startup (modules,
classes, caches) again and again, while the cycle's own objects are freed by reference
counting anyway. Freezing what startup made takes it
out of every collection: the collector's share fell to ~0.5 s. Raising the thresholds as well
(10,000 / 20 / 20) took it to ~0.2 s, but a media worker holding 2,000 jobs then grew from ~300
to 729 MB (bench/media_jobs.py; not profiled: most likely cyclic garbage, such as finished
workflows' sandboxes, waiting longer for a full collection). So the thresholds stay CPython's,
except while pull batches run (`fewer_young_collections`): a few seconds of each cycle, in
which a batch allocates tens of objects per record and frees them by reference counting.
bench/pull_sync.py, lag p50 / p99: freeze alone 5.55 / 5.71 s; thresholds raised for the whole
process 4.38 / 4.68 and 4.59 / 4.94 s; raised only during batches (this) 4.81 / 5.27 and
5.02 / 5.21 s.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# While a pull batch runs: young objects allocated (net) before a collection, then how many
# young and middle collections before the next older one (CPython's: 700, 10, 10).
PULL_THRESHOLDS = (10_000, 20, 20)
_raised = 0
_kept: tuple[int, int, int] | None = None


def tune_for_server() -> None:
    """Call once the process has imported and built what it keeps for its lifetime."""
    gc.collect()  # what startup left as garbage goes now, not frozen forever
    gc.freeze()


@contextlib.contextmanager
def fewer_young_collections() -> Iterator[None]:
    """PULL_THRESHOLDS for the process while any such block runs (they may overlap); the
    thresholds it found come back when the last one ends."""
    global _raised, _kept
    if _raised == 0:
        _kept = gc.get_threshold()
        gc.set_threshold(*PULL_THRESHOLDS)
    _raised += 1
    try:
        yield
    finally:
        _raised -= 1
        if _raised == 0 and _kept is not None:
            gc.set_threshold(*_kept)
            _kept = None
