# Two commands on a fresh machine: `make up` runs the whole stack, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Dependencies are locked, with hashes, in pip-tools-format requirements files:
# requirements.lock (runtime: what the image installs) and requirements-dev.lock (runtime + the
# dev extra: what `make install` installs, so `make up`, `make test` and .ci/run too). One
# format that plain pip reads with --require-hashes, so neither the image nor a fresh machine
# needs another tool to install. uv writes them (`make lock`) rather than pip-compile because
# uv also resolves the lowest versions for `make test-lowest`: one resolver for both.
# The runtime lock is constrained by the dev lock, so both pin the same versions.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
UV := $(VENV)/bin/uv
UV_COMPILE := $(UV) pip compile --quiet pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command "make lock"

.PHONY: up test test-lowest lint lock bench-media bench-sync bench-events bench-events-scale bench-recovery bench-fairness bench-scale bench-pull bench-peers bench-soak soak-quick install clean

# `pip check` catches a lock that no longer satisfies pyproject.toml (run `make lock`).
$(STAMP): pyproject.toml $(DEV_LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check || { echo "$(DEV_LOCK) does not satisfy pyproject.toml: run \`make lock\`" >&2; exit 1; }
	touch $(STAMP)

install: $(STAMP)

# uv alone, at the dev lock's version: `make lock` must work while the lock is stale, when
# the full install fails its `pip check`.
$(UV):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps "uv$$(sed -n 's/^uv\(==[^ ]*\).*/\1/p' $(DEV_LOCK))"

## Re-resolve both lock files after a change to pyproject.toml (pins that still fit are kept;
## `make lock UPGRADE=1` takes the newest versions instead)
lock: | $(UV)
	$(UV_COMPILE) --extra dev --extra bench $(if $(UPGRADE),--upgrade) -o $(DEV_LOCK)
	$(UV_COMPILE) -c $(DEV_LOCK) -o $(LOCK)

## Run Temporal dev server + emulator + API + worker until Ctrl-C (state in data/);
## `make up DB=postgres`: the app database on a PostgreSQL cluster in data/postgres
up: $(STAMP)
	$(PY) -m devstack up $(if $(DB),--db $(DB))

## Install and run the whole test suite, then lint and type-check. The suite is spread over
## TEST_WORKERS pytest-xdist workers; tests that share a server stay on one worker (see
## tests/conftest.py). `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 3
test: $(STAMP)
	$(PY) -m pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS))
	$(MAKE) --no-print-directory lint

## The unit tests again, on the lowest versions pyproject.toml allows (a throwaway venv; ~4 min)
test-lowest: $(STAMP)
	.ci/lowest.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

## Media jobs against the bare limit of this machine: 3 rounds and their median (~33 minutes; JSON)
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

## Scale-out: jobs/s and rows/s at 1, 2, 4 workers behind 2 APIs, then kills; exactly-once ledger (~2 min)
bench-scale: $(STAMP)
	$(PY) bench/scale_out.py

## Pull-sync: 1,000 client identities x 50 records at a 30 s cycle; lag, records/s, CPU per cycle (~5 min)
bench-pull: $(STAMP)
	$(PY) bench/pull_sync.py

## Side by side: autosync, the seeds' 10 s cron poller and a DBOS workflow on PostgreSQL, webhook
## loss 0 and 30 %: jobs/s, completion-to-stored, provider calls, CPU, memory, SIGKILL losses (~7 min)
bench-peers: $(STAMP)
	$(PY) bench/peers.py

## Fairness: 10 users, one floods 300 jobs; the others' p99 time to the provider with and without it, median of 3 rounds (~14 min)
bench-fairness: $(STAMP)
	$(PY) bench/fairness.py

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
