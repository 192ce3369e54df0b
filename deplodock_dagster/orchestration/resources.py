"""Dagster resources: thin, typed wrappers that build the library's settings objects.

Each resource is a ConfigurableResource whose fields show in the UI; secrets arrive through
`EnvVar` so their values never sit in code or run config. Fields left unset fall back to the
library's own `from_env()` defaults. Nothing is built until Dagster asks for a resource.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource

from deplodock_dagster.secrets import register_secret

logger = logging.getLogger(__name__)


def _override(base: Any, **values: Any) -> Any:
    """`base` (a dataclass) with every non-None value in `values` replaced.

    Names the dataclass does not have are an error: they mean the resource and the library
    have drifted apart, and a setting would be silently ignored.
    """
    known = {field.name for field in dataclasses.fields(base)}
    chosen = {name: value for name, value in values.items() if value is not None}
    unknown = sorted(set(chosen) - known)
    if unknown:
        from deplodock_dagster.errors import ConfigError

        raise ConfigError(
            f"{type(base).__name__} has no setting(s) {', '.join(unknown)}; "
            "remove them from the resource config"
        )
    return dataclasses.replace(base, **chosen)


class RecipesResource(ConfigurableResource):
    """Where the recipe folders live (default: the repo's recipes/ or DEPLODOCK_RECIPES_DIR)."""

    recipes_dir: str | None = None

    def root(self) -> Path:
        """The recipes directory."""
        if self.recipes_dir:
            return Path(self.recipes_dir)
        from deplodock_dagster.recipe import RECIPES_DIR

        return Path(RECIPES_DIR)

    def recipe_names(self) -> list[str]:
        """Names (folder names) of the recipes found under the root, sorted."""
        from deplodock_dagster.recipe import find_recipes

        return [Path(path).name for path in find_recipes(self.root())]


class CloudResource(ConfigurableResource):
    """Cloud provider access (CloudRift, GCP, fixed hosts) for provisioning and cleanup.

    `cloudrift_api_key` should come from EnvVar("CLOUDRIFT_API_KEY"). Unset fields keep the
    values `CloudSettings.from_env()` reads.
    """

    cloudrift_api_key: str | None = None
    cloudrift_api_url: str | None = None
    gcp_project: str | None = None
    gcp_credentials_file: str | None = None
    fixed_hosts_file: str | None = None
    ssh_key_path: str | None = None
    known_hosts_path: str | None = None

    def settings(self):
        """A `deploy.cloud.CloudSettings` built from the environment and these fields."""
        from deplodock_dagster.deploy.cloud import CloudSettings

        register_secret(self.cloudrift_api_key)
        return _override(
            CloudSettings.from_env(),
            cloudrift_api_key=self.cloudrift_api_key,
            cloudrift_api_url=self.cloudrift_api_url,
            gcp_project=self.gcp_project,
            gcp_credentials_file=self.gcp_credentials_file,
            fixed_hosts_file=self.fixed_hosts_file,
            ssh_key_path=self.ssh_key_path,
            known_hosts_path=self.known_hosts_path,
        )


class SSHResource(ConfigurableResource):
    """The SSH client key and known_hosts file used to reach fixed hosts and fresh VMs."""

    key_path: str | None = None
    known_hosts_path: str | None = None


class BenchSettingsResource(ConfigurableResource):
    """How tasks are deployed and benchmarked (`bench.settings.BenchSettings`).

    `hf_token` should come from EnvVar("HF_TOKEN"). `prices_file` is read by the report.
    """

    model_dir: str | None = None
    hf_token: str | None = None
    runtime: str | None = None
    engine_python: str | None = None
    deploy_dir: str | None = None
    health_timeout_s: float | None = None
    prices_file: str | None = None

    def settings(self, ssh: SSHResource | None = None, results_dir: str | None = None):
        """A `BenchSettings` from the environment, these fields and the SSH settings."""
        from deplodock_dagster.bench.settings import BenchSettings

        register_secret(self.hf_token)
        values = dict(
            model_dir=self.model_dir,
            hf_token=self.hf_token,
            runtime=self.runtime,
            engine_python=self.engine_python,
            deploy_dir=self.deploy_dir,
            health_timeout_s=self.health_timeout_s,
            results_dir=results_dir,
        )
        if ssh is not None:
            values.update(ssh_key_path=ssh.key_path, known_hosts_path=ssh.known_hosts_path)
        return _override(BenchSettings.from_env(), **values)


class ResultStoreResource(ConfigurableResource):
    """Where benchmark results are stored (one folder per recipe, one per task)."""

    root_dir: str = "results"

    def store(self):
        """The library's ResultStore over `root_dir`."""
        from deplodock_dagster.bench.store import ResultStore

        return ResultStore(Path(self.root_dir))


class ReportResource(ConfigurableResource):
    """Where `benchmark_report` writes workbooks, and extra (older) result folders to read."""

    out_dir: str = "reports"
    extra_results_dirs: list[str] = []
