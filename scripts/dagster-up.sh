#!/usr/bin/env bash
# Start the Dagster UI and daemon for the deplodock code location (Ctrl-C stops both).
#   scripts/dagster-up.sh [PORT]     default port 3000
# Postgres when DAGSTER_PG_HOST is set, SQLite under .dagster_home otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/dagster-env.sh
exec .venv/bin/dagster dev -w workspace.yaml -p "${1:-3000}"
