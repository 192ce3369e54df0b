#!/usr/bin/env bash
# Set up deplodock-dagster on this machine: Debian packages the tests use (OpenSSH server),
# the project venv (.venv) with the package and its test extras. Safe to run again.
#   scripts/setup.sh            project only
#   scripts/setup.sh --engine   also the vLLM CPU engine venv and the tiny test model
set -euo pipefail
cd "$(dirname "$0")/.."

want_engine=0
[[ "${1:-}" == "--engine" ]] && want_engine=1

apt_packages=(openssh-server openssh-client nginx)  # nginx: balancer conf tests
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
stamp=.venv/.deplodock-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "setup: installing the package into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | grep -v "^WARNING: Location" || true
  .venv/bin/python - <<'PY'
import importlib.metadata as md
pins = {"dagster": "1.13.27", "dagster-webserver": "1.13.27", "dagster-postgres": "0.29.27"}
wrong = {n: md.version(n) for n, v in pins.items() if md.version(n) != v}
if wrong:
    raise SystemExit(f"setup: pip installed the wrong Dagster family: {wrong}; expected {pins}")
PY
  touch "$stamp"
fi

if ((want_engine)); then
  scripts/setup-engine.sh
fi
echo "setup: done"
