#!/usr/bin/env bash
# Creates .venv with the pinned dependencies (re-installs only when pyproject.toml or the lock change).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "install: Python 3.11 est requis (trouvé : $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
stamp=.venv/.relais-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
echo "$want" > "$stamp"
echo "install: dépendances installées dans .venv"
