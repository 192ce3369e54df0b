"""Orchestration settings read from the environment when the code location loads.

Only plain environment reads happen here (no files, no network), because Dagster needs some
values when the definitions are built: sensor intervals and retry delays are part of the
definitions, not of a run.
"""

from __future__ import annotations

import os


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as error:
        from deplodock_dagster.errors import ConfigError

        raise ConfigError(f"environment variable {name}={raw!r} is not a number") from error


# How often the reconciliation sensor looks for VMs whose run is gone.
RECONCILE_INTERVAL_S = int(_env_float("DEPLODOCK_RECONCILE_INTERVAL_S", 300))
# A VM labelled with a run id the instance does not know is deleted after this long.
UNKNOWN_RUN_GRACE_S = _env_float("DEPLODOCK_UNKNOWN_RUN_GRACE_S", 1800)
# How often the recipes sensor compares the partition keys with the recipes folder.
RECIPES_SENSOR_INTERVAL_S = int(_env_float("DEPLODOCK_RECIPES_SENSOR_INTERVAL_S", 60))
# Retries of ops that talk to clouds and hosts: count and first delay (exponential, jittered).
CLOUD_MAX_RETRIES = int(_env_float("DEPLODOCK_CLOUD_MAX_RETRIES", 4))
CLOUD_RETRY_DELAY_S = _env_float("DEPLODOCK_CLOUD_RETRY_DELAY_S", 15)
# The nightly benchmark schedule (cron, UTC).
NIGHTLY_CRON = os.environ.get("DEPLODOCK_NIGHTLY_CRON", "0 2 * * *")

# Run tags the queued run coordinator limits on (see dagster.yaml).
PROVIDER_TAG = "deplodock/provider"
GPU_TAG = "deplodock/gpu"
KIND_TAG = "deplodock/kind"
# Where the run worker lives, so reconciliation can tell a killed worker from a slow one.
WORKER_HOST_TAG = "deplodock/worker_host"
WORKER_PID_TAG = "deplodock/worker_pid"
# Set on runs whose VMs are meant to stay (vm_create_job, deploy_cloud_job with keep_vm).
KEEP_VMS_TAG = "deplodock/keep_vms"
