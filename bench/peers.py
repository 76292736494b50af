"""Autosync side by side with the seeds' cron poller and a DBOS workflow; prints one JSON object.

    .venv/bin/python bench/peers.py [--quick] [--systems autosync,seeds,dbos]

The bench lives in the `bench/peers/` package (`bench/peers/main.py` says what it measures);
this file only runs it, so `make bench-peers` and the command above stay short.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peers.main import main

if __name__ == "__main__":
    sys.exit(main())
