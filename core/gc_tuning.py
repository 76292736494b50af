"""The cyclic garbage collector, set for a long-running server process.

Measured on a pull cycle (1,000 clients x 50 records, one worker process; the harness ran the
pull activities outside Temporal): the collector took ~1.0 s of the cycle's ~4.3 CPU-seconds.
Most of it was full collections walking every object the process made at startup (modules,
classes, the workflow sandbox's copies, SQLAlchemy's caches), again and again, while the
cycle's own objects are freed by reference counting anyway. Freezing what startup made takes it
out of every collection: the collector's share fell to ~0.5 s. Raising the thresholds as well
(10,000 / 20 / 20) took it to ~0.2 s, but a media worker holding 2,000 jobs then grew from ~300
to 729 MB (bench/media_jobs.py; not profiled: most likely cyclic garbage, such as finished
workflows' sandboxes, waiting longer for a full collection). So the thresholds stay CPython's.
"""

from __future__ import annotations

import gc


def tune_for_server() -> None:
    """Call once the process has imported and built what it keeps for its lifetime."""
    gc.collect()  # what startup left as garbage goes now, not frozen forever
    gc.freeze()
