#!/usr/bin/env bash
# The lower bounds in pyproject.toml, proven: a throwaway venv gets every direct dependency at
# the lowest version its bound allows (transitive ones resolve as usual), then the unit tests
# run there. The lock file only ever exercises the newest versions we tested, so without this
# a bound can drift below what the code needs and nobody notices until a user's resolver picks it.
#
#   .ci/lowest.sh [pytest args…]      (default: the unit tests, no end-to-end stacks)
#
# uv comes from the dev lock (.venv/bin/uv, `make install`); pip has no lowest-direct resolution.
set -euo pipefail

cd "$(dirname "$0")/.."

UV=${UV:-.venv/bin/uv}
PYTHON=${PYTHON:-python3}
[ -x "$UV" ] || { echo "$UV missing: run \`make install\` first" >&2; exit 1; }

tmp="$(mktemp -d -t autosync-lowest-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
"$UV" venv --quiet --python "$PYTHON" "$tmp/venv"
VIRTUAL_ENV="$tmp/venv" "$UV" pip install --quiet --resolution lowest-direct -e ".[dev]"
echo "lowest direct versions:"
VIRTUAL_ENV="$tmp/venv" "$UV" pip freeze | grep -iE "^($(
    "$tmp/venv/bin/python" - <<'PY'
import re, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = p["dependencies"] + p["optional-dependencies"]["dev"]
print("|".join(re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].replace("_", "-") for d in deps))
PY
))==" | sed 's/^/  /'

if [ "$#" -eq 0 ]; then
    # The unit tests of the code the bounded packages serve: the API (FastAPI, Starlette,
    # pydantic, pydantic-settings), the stores (SQLAlchemy, alembic), storage (boto3), health
    # and metrics (prometheus-client), tracing and logs, the deploy checks. Temporal and the
    # provider clients are pinned exactly, so their tests prove nothing more here; end-to-end
    # stacks run the same code paths far slower. (`.ci/lowest.sh -m "not e2e" --ignore=tests/e2e`
    # runs every unit test: about 4 minutes.)
    set -- -m "not e2e" tests/api tests/health tests/sync tests/storage tests/deploy \
        tests/observability
fi
# No cache dir, no bytecode in the worktree: this run must leave nothing behind.
PYTHONDONTWRITEBYTECODE=1 "$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
echo "lowest-direct check took $(( $(date +%s) - start ))s"
