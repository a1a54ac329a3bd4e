#!/usr/bin/env bash
# Installs and runs the whole platform with demo data on embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/relais up --demo "$@"
