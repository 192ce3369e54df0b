"""The deplodock code location: assets, jobs, schedule, sensors and resources.

Loading it reads environment variables only (no files, no network); resources are built
when a run or sensor asks for them. Secrets are passed as EnvVar so the UI shows the
variable's name, never its value.
"""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar

from deplodock_dagster.orchestration.assets import benchmark_report, benchmark_results
from deplodock_dagster.orchestration.jobs import ACTION_JOBS, benchmark_job
from deplodock_dagster.orchestration.resources import (
    BenchSettingsResource,
    CloudResource,
    RecipesResource,
    ReportResource,
    ResultStoreResource,
    SSHResource,
)
from deplodock_dagster.orchestration.schedules import nightly_benchmarks
from deplodock_dagster.orchestration.sensors import (
    delete_vms_of_canceled_runs,
    delete_vms_of_failed_runs,
    reconcile_vms_sensor,
    recipes_sensor,
)


def _secret(name: str) -> EnvVar | None:
    """EnvVar(name) when the variable is set; None lets the library's defaults apply.

    EnvVar of an unset variable would fail every run, including those that need no cloud.
    """
    return EnvVar(name) if os.environ.get(name) else None


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def build_resources(
    *,
    recipes_dir: str | None = None,
    results_dir: str | None = None,
    reports_dir: str | None = None,
) -> dict:
    """The resources every job uses, configured from the environment (arguments win)."""
    return {
        "recipes": RecipesResource(recipes_dir=recipes_dir or _env("DEPLODOCK_RECIPES_DIR")),
        "cloud": CloudResource(cloudrift_api_key=_secret("CLOUDRIFT_API_KEY")),
        "ssh": SSHResource(
            key_path=_env("DEPLODOCK_SSH_KEY"),
            known_hosts_path=_env("DEPLODOCK_KNOWN_HOSTS"),
        ),
        "bench": BenchSettingsResource(
            hf_token=_secret("HF_TOKEN"),
            prices_file=_env("DEPLODOCK_PRICES_FILE"),
        ),
        "results": ResultStoreResource(
            root_dir=results_dir or _env("DEPLODOCK_RESULTS_DIR", "results")
        ),
        "report": ReportResource(
            out_dir=reports_dir or _env("DEPLODOCK_REPORTS_DIR", "reports")
        ),
    }


defs = Definitions(
    assets=[benchmark_results, benchmark_report],
    jobs=[benchmark_job, *ACTION_JOBS],
    schedules=[nightly_benchmarks],
    sensors=[
        recipes_sensor,
        delete_vms_of_failed_runs,
        delete_vms_of_canceled_runs,
        reconcile_vms_sensor,
    ],
    resources=build_resources(),
)
