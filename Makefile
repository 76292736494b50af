# Two commands on a fresh machine: `make up` runs the whole stack, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up test lint bench-media bench-sync bench-events bench-events-scale bench-recovery bench-scale bench-pull bench-soak soak-quick install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Run Temporal dev server + emulator + API + worker until Ctrl-C (state in data/)
up: $(STAMP)
	$(PY) -m devstack up

## Install and run the whole test suite, then lint and type-check
test: $(STAMP)
	$(PY) -m pytest
	$(MAKE) --no-print-directory lint

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

## Media jobs against the bare limit of this machine (about 4.5 minutes; prints JSON)
bench-media: $(STAMP)
	$(PY) bench/media_jobs.py

## Sync runs: rows/s into PostgreSQL, rate-limited requests/s, overhead against a plain script (~7 min)
bench-sync: $(STAMP)
	$(PY) bench/sync_runs.py

## Live events: commit → receipt by 200 WebSocket subscribers at 50 events/s, PostgreSQL (~1 min)
bench-events: $(STAMP)
	$(PY) bench/events.py

## Live events at scale: 2,000 WebSocket/SSE subscribers over 2 APIs at 200 events/s (~2 min)
bench-events-scale: $(STAMP)
	$(PY) bench/events.py --scale

## Scale-out: jobs/s and rows/s at 1, 2, 4 workers behind 2 APIs, then kills; exactly-once ledger (~12 min)
bench-scale: $(STAMP)
	$(PY) bench/scale_out.py

## Pull-sync: 1,000 client identities x 50 records at a 30 s cycle; lag, records/s, CPU per cycle (~5 min)
bench-pull: $(STAMP)
	$(PY) bench/pull_sync.py

## Outputs stored before their URLs expire; copy MB/s to S3 and worker RSS per file size (~3 min)
bench-recovery: $(STAMP)
	$(PY) bench/recovery.py

## Fault soak: load and combined faults, then a ledger whose must-be-zero figures must be 0 (20 min)
bench-soak: $(STAMP)
	$(PY) bench/soak.py

## The same in 4 minutes with every fault at least once (CI runs it after `make test`)
soak-quick: $(STAMP)
	$(PY) bench/soak.py --quick

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
