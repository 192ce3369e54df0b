"""Engine runtimes: how an engine runs on a host (docker compose, or a plain process)."""

from __future__ import annotations

from deplodock_dagster.deploy.runtimes.common import DeployOutcome, Runtime
from deplodock_dagster.errors import ConfigError
from deplodock_dagster.recipe.types import RUNTIMES

DEFAULT_RUNTIME = "docker-compose"


def get_runtime(name: str | None) -> Runtime:
    """The runtime called `name` ("docker-compose" or "process"; None means the default)."""
    from deplodock_dagster.deploy.runtimes.compose import ComposeRuntime
    from deplodock_dagster.deploy.runtimes.process import ProcessRuntime

    name = name or DEFAULT_RUNTIME
    if name == ComposeRuntime.name:
        return ComposeRuntime()
    if name == ProcessRuntime.name:
        return ProcessRuntime()
    raise ConfigError(f"unknown runtime {name!r}: expected one of {', '.join(RUNTIMES)}")


__all__ = ["DEFAULT_RUNTIME", "DeployOutcome", "Runtime", "get_runtime"]
