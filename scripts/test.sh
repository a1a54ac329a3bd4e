#!/usr/bin/env bash
# The whole test suite, from a fresh clone: install, lint and type-check, make sure services answer, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
echo "test: ruff (lint, import order)"
.venv/bin/ruff check .
echo "test: mypy (strict on domain/ and application/)"
.venv/bin/mypy
scripts/system-packages.sh
scripts/services.sh
export RELAIS_TEST_SERVER_URL=${RELAIS_TEST_SERVER_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
export RELAIS_TEST_REDIS_URL=${RELAIS_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
# Two worker processes (RELAIS_TEST_WORKERS, 1 for a single process): each test file runs whole in one
# of them, the fault suite in one (tests/conftest.py), each worker on its own database.
workers=${RELAIS_TEST_WORKERS:-2}
parallel=()
if [ "$workers" -gt 1 ]; then
  parallel=(-n "$workers" --dist loadgroup --no-loadscope-reorder)
fi
set +e
.venv/bin/python -m pytest "${parallel[@]}" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test: aucun test exécuté" >&2
  exit 1
fi
exit "$rc"
