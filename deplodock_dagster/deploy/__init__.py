"""The deploy layer: one entry point to put an engine on a host, one to take it down.

    deploy(params)    bootstrap the host, start the engine, wait for health, smoke-test it
    teardown(params)  stop the engine of that deploy directory (idempotent)

`run_deploy` and `run_teardown` are the same without the bootstrap, for callers that
prepared the host themselves. The runtime (docker-compose or process) comes from
`params.runtime`; see deploy/runtimes/.
"""

from __future__ import annotations

import logging

from deplodock_dagster.deploy.params import DeployParams
from deplodock_dagster.deploy.runtimes import DEFAULT_RUNTIME, DeployOutcome, get_runtime
from deplodock_dagster.deploy.runtimes.common import with_resolved_dirs
from deplodock_dagster.errors import DeplodockError

logger = logging.getLogger(__name__)


def run_deploy(params: DeployParams) -> DeployOutcome:
    """Start the engine with `params.runtime`, wait until healthy, smoke-test it.

    Raises DeployError (with `.engine_log_tail` when the engine got far enough to log).
    """
    runtime = get_runtime(params.runtime)
    return runtime.deploy(with_resolved_dirs(params))


def run_teardown(params: DeployParams) -> bool:
    """Stop the engine of `params.deploy_dir`. True if one was running; idempotent."""
    runtime = get_runtime(params.runtime)
    return runtime.teardown(with_resolved_dirs(params))


def deploy(params: DeployParams) -> DeployOutcome:
    """Bootstrap the host, then deploy; a failed deploy stops what it started.

    The error keeps the engine's log tail (`.engine_log_tail`) for the caller to store.
    """
    from deplodock_dagster.deploy.bootstrap import bootstrap

    get_runtime(params.runtime)  # an unknown runtime fails before touching the host
    params = with_resolved_dirs(params)
    bootstrap(params)
    try:
        return run_deploy(params)
    except DeplodockError:
        _stop_after_failure(params)
        raise


def teardown(params: DeployParams) -> bool:
    """Stop the engine this deploy started (see run_teardown)."""
    stopped = run_teardown(params)
    logger.info("teardown on %s: %s", params.host.name,
                "engine stopped" if stopped else "nothing was running")
    return stopped


def engine_log_tail(params: DeployParams, lines: int = 80) -> str:
    """The last lines of the engine's log on the host, secrets redacted ('' if none)."""
    try:
        return get_runtime(params.runtime).log_tail(with_resolved_dirs(params), lines)
    except DeplodockError as error:
        logger.warning("could not read the engine log on %s: %s", params.host.name, error)
        return ""


def _stop_after_failure(params: DeployParams) -> None:
    try:
        run_teardown(params)
    except DeplodockError as error:
        logger.warning("after a failed deploy, stopping the engine failed too: %s", error)


__all__ = [
    "DEFAULT_RUNTIME",
    "DeployOutcome",
    "DeployParams",
    "deploy",
    "engine_log_tail",
    "run_deploy",
    "run_teardown",
    "teardown",
]
