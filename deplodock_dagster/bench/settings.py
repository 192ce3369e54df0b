"""BenchSettings: where results go and how engines are deployed for benchmark tasks.

One value shared by the CLI, the group runner and the Dagster resources. `from_env()` reads
the DEPLODOCK_* environment variables (and HF_TOKEN); the HF token is registered as a
secret as soon as it is read, and is left out of repr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from deplodock_dagster.deploy.params import (
    DEFAULT_DEPLOY_DIR,
    DEFAULT_ENGINE_PORT,
    DEFAULT_ENGINE_PYTHON,
    DEFAULT_MODEL_DIR,
)
from deplodock_dagster.envvars import env_flag, env_positive
from deplodock_dagster.errors import ConfigError
from deplodock_dagster.recipe.types import RUNTIMES
from deplodock_dagster.secrets import register_secret

DEFAULT_RESULTS_DIR = "results"
DEFAULT_HEALTH_TIMEOUT_S = 1800.0
DEFAULT_BENCH_TIMEOUT_S = 4 * 3600.0


@dataclass
class BenchSettings:
    """How benchmark tasks deploy, measure and store.

    `runtime` overrides every recipe's preferred runtime when set. `engine_python` is the
    interpreter of the venv holding the engine on the host (process runtime).
    """

    results_dir: str = DEFAULT_RESULTS_DIR
    model_dir: str = DEFAULT_MODEL_DIR
    hf_token: str | None = field(default=None, repr=False)
    runtime: str | None = None
    engine_python: str = DEFAULT_ENGINE_PYTHON
    deploy_dir: str = DEFAULT_DEPLOY_DIR
    port: int = DEFAULT_ENGINE_PORT
    health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S
    bench_timeout_s: float = DEFAULT_BENCH_TIMEOUT_S
    ssh_key_path: str | None = None
    known_hosts_path: str | None = None
    install_missing: bool = False
    force: bool = False

    def __post_init__(self):
        register_secret(self.hf_token)
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise ConfigError(
                f"runtime {self.runtime!r}: expected one of {', '.join(RUNTIMES)}"
            )

    def runtime_for(self, recipe_runtime: str | None) -> str:
        """The runtime a task uses: this override, else the recipe's, else docker-compose."""
        return self.runtime or recipe_runtime or "docker-compose"

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides) -> BenchSettings:
        """Settings from the environment; keyword `overrides` win (None values ignored).

        DEPLODOCK_RESULTS_DIR, DEPLODOCK_MODEL_DIR, HF_TOKEN, DEPLODOCK_RUNTIME,
        DEPLODOCK_ENGINE_PYTHON (or DEPLODOCK_ENGINE_VENV/bin/python), DEPLODOCK_DEPLOY_DIR,
        DEPLODOCK_ENGINE_PORT, DEPLODOCK_HEALTH_TIMEOUT_S, DEPLODOCK_BENCH_TIMEOUT_S,
        DEPLODOCK_SSH_KEY, DEPLODOCK_KNOWN_HOSTS, DEPLODOCK_INSTALL_MISSING, DEPLODOCK_FORCE.
        """
        env = os.environ if environ is None else environ
        venv = env.get("DEPLODOCK_ENGINE_VENV")
        engine_python = env.get("DEPLODOCK_ENGINE_PYTHON") or (
            f"{venv.rstrip('/')}/bin/python" if venv else DEFAULT_ENGINE_PYTHON
        )
        values = {
            "results_dir": env.get("DEPLODOCK_RESULTS_DIR", DEFAULT_RESULTS_DIR),
            "model_dir": env.get("DEPLODOCK_MODEL_DIR", DEFAULT_MODEL_DIR),
            "hf_token": env.get("HF_TOKEN") or None,
            "runtime": env.get("DEPLODOCK_RUNTIME") or None,
            "engine_python": engine_python,
            "deploy_dir": env.get("DEPLODOCK_DEPLOY_DIR", DEFAULT_DEPLOY_DIR),
            "port": env_positive(env, "DEPLODOCK_ENGINE_PORT", int, DEFAULT_ENGINE_PORT),
            "health_timeout_s": env_positive(env, "DEPLODOCK_HEALTH_TIMEOUT_S", float,
                                             DEFAULT_HEALTH_TIMEOUT_S),
            "bench_timeout_s": env_positive(env, "DEPLODOCK_BENCH_TIMEOUT_S", float,
                                            DEFAULT_BENCH_TIMEOUT_S),
            "ssh_key_path": env.get("DEPLODOCK_SSH_KEY") or None,
            "known_hosts_path": env.get("DEPLODOCK_KNOWN_HOSTS") or None,
            "install_missing": env_flag(env, "DEPLODOCK_INSTALL_MISSING"),
            "force": env_flag(env, "DEPLODOCK_FORCE"),
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)
