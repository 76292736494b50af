# syntax=docker/dockerfile:1
# One image for the API, the worker and the migrations (docker-compose.yml picks the command).
#   docker build -t autosync .               the runtime image (the last stage)
#   docker build --target dev -t autosync-dev .   plus emulators/, devstack/ and the dev extras
# tests/deploy/test_dockerfile.py lints this file and rebuilds its layout without Docker.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- builder: the locked dependencies, then the project itself, into /opt/venv --------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies get their own layer: a code change does not reinstall them. Exactly the runtime
# lock's versions and hashes (`make lock` writes it; requirements-dev.lock adds the dev tools).
COPY pyproject.toml requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
# Only the code the API, the worker and the migrations import: no emulators, devstack, tests
# or benches (pyproject's package discovery takes what is here).
COPY core core
COPY sync_modules sync_modules
COPY providers providers
COPY storage storage
COPY workflows workflows
COPY activities activities
COPY api api
COPY worker.py ./
# The `autosync` CLI and its client, so `docker compose exec api autosync …` works.
COPY autosync_client autosync_client
# Not editable: the code lives in site-packages, compiled to bytecode at install (the worker's
# workflow sandbox re-imports it for every workflow, and the runtime user can't write .pyc).
RUN pip install --no-cache-dir --no-deps .

# --- dev: the runtime plus the emulators, devstack and test tools -----------------------------
FROM builder AS dev
COPY emulators emulators
COPY devstack devstack
# The dev tools, locked like the rest (not part of what runs in production).
COPY requirements-dev.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements-dev.lock
RUN groupadd --system --gid 10001 autosync \
    && useradd --system --uid 10001 --gid autosync --home-dir /src --shell /usr/sbin/nologin autosync \
    && mkdir -p /src/data && chown autosync:autosync /src/data
COPY alembic.ini ./
COPY migrations migrations
USER 10001:10001
CMD ["python", "-m", "devstack", "up"]

# --- runtime (default): slim, non-root, only what runs ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 autosync \
    && useradd --system --uid 10001 --gid autosync --home-dir /app --shell /usr/sbin/nologin autosync
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# core.migrate finds these in the working directory (core itself is in site-packages).
COPY alembic.ini ./
COPY migrations migrations
USER 10001:10001
EXPOSE 8000
# The API's health: 503 (a failed check) when critical, e.g. Temporal or the database is
# unreachable or no worker polls. The worker's service in docker-compose.yml overrides it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v1/health', timeout=4)"]
CMD ["uvicorn", "api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "20"]
