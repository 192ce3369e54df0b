"""One job per single action, for the UI's launchpad: deploy, teardown, VM create/delete.

Each job is one thin op over the library function the CLI calls, with a typed Config class
so the launchpad shows the fields and their descriptions. VMs made by `vm_create_job` (and by
`deploy_cloud_job` with keep_vm) are meant to outlive their run: the run gets the
`deplodock/keep_vms` tag, which the cleanup sensors respect once the run has succeeded.
"""

from pathlib import Path

from dagster import Config, Failure, MetadataValue, OpExecutionContext, job, op
from pydantic import Field

from deplodock_dagster.orchestration import settings as orch_settings
from deplodock_dagster.orchestration.ops import CLOUD_RETRY_POLICY, is_transient
from deplodock_dagster.orchestration.resources import (
    BenchSettingsResource,
    CloudResource,
    RecipesResource,
    SSHResource,
)
from deplodock_dagster.secrets import redact

ACTION_TAGS = {orch_settings.KIND_TAG: "action"}


class DeployConfig(Config):
    """Which recipe variant to deploy, and how."""

    recipe: str = Field(description="Recipe name under the recipes folder, or a path.")
    variant: str = Field(description="Variant name, e.g. 8xH200 (see the recipe).")
    runtime: str | None = Field(
        default=None, description="docker-compose or process; default: the recipe's choice."
    )
    port: int = Field(default=8000, description="Port the engine (or balancer) listens on.")
    dry_run: bool = Field(default=False, description="Record the commands; run nothing.")


class SSHDeployConfig(DeployConfig):
    """A deploy on a host reached over SSH (checked against known_hosts)."""

    address: str = Field(description="Host name or IP address.")
    ssh_port: int = Field(default=22, description="SSH port.")
    username: str = Field(default="root", description="SSH user.")


class CloudDeployConfig(DeployConfig):
    """A deploy on a fresh cloud VM for the variant's GPUs."""

    keep_vm: bool = Field(
        default=False,
        description="Leave the VM serving after the run; otherwise tear down and delete it.",
    )


class TeardownConfig(DeployConfig):
    """Stop what a deploy started (locally, or on an SSH host when `address` is set)."""

    address: str | None = Field(default=None, description="SSH host; empty means this host.")
    ssh_port: int = Field(default=22, description="SSH port.")
    username: str = Field(default="root", description="SSH user.")


class VMCreateConfig(Config):
    """A VM with `gpu_count` GPUs of `gpu` on the first provider that has one."""

    gpu: str = Field(description="GPU name or short name, e.g. H100 or 'NVIDIA H100 80GB'.")
    gpu_count: int = Field(default=1, description="Number of GPUs.")
    label: str = Field(default="manual", description="Group label carried by the VM name.")


class VMDeleteConfig(Config):
    """Which managed VM to delete."""

    vm: str = Field(description="VM name or instance id (see `deplodock vm list`).")
    dry_run: bool = Field(default=False, description="Say what would be deleted; delete nothing.")


def _resolve(context: OpExecutionContext, config: DeployConfig, recipes: RecipesResource):
    """The resolved recipe of `config` (the first sweep point when the variant sweeps)."""
    from deplodock_dagster.errors import DeplodockError
    from deplodock_dagster.recipe import resolve_variant

    path = Path(config.recipe)
    if not path.exists():
        path = recipes.root() / config.recipe
    try:
        resolved = resolve_variant(path, config.variant)
    except DeplodockError as error:
        raise Failure(redact(str(error)), allow_retries=False) from error
    if len(resolved) > 1:
        context.log.info("variant %s sweeps %d points; deploying the first (%s)",
                         config.variant, len(resolved), resolved[0].sweep_label)
    return resolved[0]


def _deploy_params(recipe, host, config: DeployConfig, bench: BenchSettingsResource,
                   ssh: SSHResource):
    """DeployParams as the CLI builds them (bench.runner.deploy_params_for), plus config."""
    import dataclasses

    from deplodock_dagster.bench.runner import deploy_params_for
    from deplodock_dagster.deploy.runtimes.common import with_resolved_dirs
    from deplodock_dagster.planner import BenchmarkTask

    settings = dataclasses.replace(bench.settings(ssh), port=config.port)
    if config.runtime:
        settings = dataclasses.replace(settings, runtime=config.runtime)
    params = deploy_params_for(BenchmarkTask(recipe), host, settings)
    params.dry_run = config.dry_run
    return with_resolved_dirs(params) if config.dry_run else params


def _deploy_on(context: OpExecutionContext, params) -> dict:
    """deploy(params), reported; a library error fails the op with its message."""
    from deplodock_dagster.deploy import deploy
    from deplodock_dagster.errors import DeplodockError

    try:
        outcome = deploy(params)
    except DeplodockError as error:
        raise Failure(redact(str(error)), allow_retries=False) from error
    if params.dry_run:
        transcript = "\n".join(params.host.transcript(with_content=True))
        context.log.info("dry run on %s, nothing was run; it would:\n%s", params.host.name,
                         redact(transcript))
        context.add_output_metadata({"commands": MetadataValue.md(
            "```\n" + redact(transcript) + "\n```")})
    context.log.info("%s serves %s at %s", outcome.runtime, outcome.served_model_name,
                     outcome.endpoint)
    context.add_output_metadata({"endpoint": outcome.endpoint, "runtime": outcome.runtime})
    return {"endpoint": outcome.endpoint, "runtime": outcome.runtime}


def _host(config, ssh: SSHResource, *, address: str | None):
    """The host to act on: a recording dry-run host, this machine, or an SSH host."""
    from deplodock_dagster.hosts import DryRunHost, LocalHost

    if config.dry_run:
        import os
        import shlex

        from deplodock_dagster.deploy.runtimes.common import HOME_SCRIPT

        user = getattr(config, "username", None)
        home = os.path.expanduser("~") if not address else (
            "/root" if user in (None, "root") else f"/home/{user}")
        host = DryRunHost(name=address or "local",
                          outputs={f"sh -c {shlex.quote(HOME_SCRIPT)}": home})
        host.address = address or "127.0.0.1"
        return host
    if not address:
        return LocalHost()
    from deplodock_dagster.hosts.ssh import SSHHost

    return SSHHost(address, config.ssh_port, config.username, ssh.key_path,
                   known_hosts_path=ssh.known_hosts_path, host_key_policy="strict")


@op(tags={"kind": "deploy"})
def deploy_local(context: OpExecutionContext, config: DeployConfig, recipes: RecipesResource,
                 bench: BenchSettingsResource, ssh: SSHResource) -> dict:
    """Deploy a recipe variant on this machine."""
    recipe = _resolve(context, config, recipes)
    host = _host(config, ssh, address=None)
    return _deploy_on(context, _deploy_params(recipe, host, config, bench, ssh))


@op(tags={"kind": "deploy"})
def deploy_ssh(context: OpExecutionContext, config: SSHDeployConfig, recipes: RecipesResource,
               bench: BenchSettingsResource, ssh: SSHResource) -> dict:
    """Deploy a recipe variant on a host over SSH."""
    recipe = _resolve(context, config, recipes)
    host = _host(config, ssh, address=config.address)
    try:
        return _deploy_on(context, _deploy_params(recipe, host, config, bench, ssh))
    finally:
        host.close()


@op(tags={"kind": "deploy"})
def deploy_cloud(context: OpExecutionContext, config: CloudDeployConfig,
                 recipes: RecipesResource, bench: BenchSettingsResource, ssh: SSHResource,
                 cloud: CloudResource) -> dict:
    """Provision a VM for the variant's GPUs, deploy on it; delete it unless keep_vm."""
    from deplodock_dagster.deploy import teardown
    from deplodock_dagster.deploy.cloud import delete_cloud_vm, provision_cloud_vm
    from deplodock_dagster.errors import DeplodockError
    from deplodock_dagster.hosts import connect

    recipe = _resolve(context, config, recipes)
    if config.dry_run:
        context.log.info("dry run: would provision %d x %s and deploy %s", recipe.gpu_count,
                         recipe.gpu_name, recipe.task_id)
        return {"endpoint": "", "runtime": config.runtime or recipe.runtime or ""}
    if config.keep_vm:
        context.instance.add_run_tags(context.run_id, {orch_settings.KEEP_VMS_TAG: "true"})

    settings = cloud.settings()
    try:
        conn = provision_cloud_vm(recipe.gpu_name, recipe.gpu_count, settings=settings,
                                  run_id=context.run_id, group_label="deploy")
    except DeplodockError as error:
        raise Failure(redact(str(error)), allow_retries=is_transient(error)) from error
    context.log.info("VM %s (%s %s) at %s", conn.name, conn.provider, conn.instance_id,
                     conn.host)
    bench_settings = bench.settings(ssh)
    host = connect(conn, key_path=bench_settings.ssh_key_path,
                   known_hosts_path=bench_settings.known_hosts_path, host_key_policy="record")
    params = _deploy_params(recipe, host, config, bench, ssh)
    try:
        served = _deploy_on(context, params)
        if not config.keep_vm:
            teardown(params)
        return {**served, "vm": conn.name}
    finally:
        host.close()
        if not config.keep_vm:
            delete_cloud_vm(conn.delete_info, settings=settings)
            context.log.info("VM %s deleted", conn.name)


@op(tags={"kind": "deploy"})
def teardown_deploy(context: OpExecutionContext, config: TeardownConfig,
                    recipes: RecipesResource, bench: BenchSettingsResource,
                    ssh: SSHResource) -> bool:
    """Stop the engine a deploy of this recipe variant started."""
    from deplodock_dagster.deploy import teardown
    from deplodock_dagster.errors import DeplodockError

    recipe = _resolve(context, config, recipes)
    host = _host(config, ssh, address=config.address)
    try:
        stopped = teardown(_deploy_params(recipe, host, config, bench, ssh))
    except DeplodockError as error:
        raise Failure(redact(str(error)), allow_retries=False) from error
    finally:
        host.close()
    if config.dry_run:
        context.log.info("dry run, nothing was run; it would:\n%s",
                         redact("\n".join(host.transcript(with_content=True))))
    context.log.info("teardown: %s", "engine stopped" if stopped else "nothing was running")
    return stopped


@op(tags={"kind": "cloud"}, retry_policy=CLOUD_RETRY_POLICY)
def create_vm(context: OpExecutionContext, config: VMCreateConfig, cloud: CloudResource) -> dict:
    """Create a managed VM that stays after the run (delete it with vm_delete_job)."""
    from deplodock_dagster.deploy.cloud import provision_cloud_vm
    from deplodock_dagster.errors import DeplodockError
    from deplodock_dagster.hardware import resolve_gpu_name

    context.instance.add_run_tags(context.run_id, {orch_settings.KEEP_VMS_TAG: "true"})
    try:
        conn = provision_cloud_vm(resolve_gpu_name(config.gpu), config.gpu_count,
                                  settings=cloud.settings(), run_id=context.run_id,
                                  group_label=config.label)
    except DeplodockError as error:
        if is_transient(error):
            raise
        raise Failure(redact(str(error)), allow_retries=False) from error
    context.log.info("VM %s (%s %s) at %s:%d", conn.name, conn.provider, conn.instance_id,
                     conn.host, conn.ssh_port)
    context.add_output_metadata({"vm": conn.name, "provider": conn.provider,
                                 "address": f"{conn.host}:{conn.ssh_port}"})
    return conn.to_dict()


@op(tags={"kind": "cloud"}, retry_policy=CLOUD_RETRY_POLICY)
def delete_named_vm(context: OpExecutionContext, config: VMDeleteConfig,
                    cloud: CloudResource) -> bool:
    """Delete one managed VM by name or instance id."""
    from deplodock_dagster.deploy.cloud import delete_cloud_vm, list_managed_vms

    settings = cloud.settings()
    matches = [vm for vm in list_managed_vms(settings)
               if config.vm in (vm.name, vm.instance_id)]
    if not matches:
        raise Failure(f"no managed VM named {config.vm!r} (see `deplodock vm list`)",
                      allow_retries=False)
    for vm in matches:
        if config.dry_run:
            context.log.info("dry run: would delete VM %s (%s %s)", vm.name, vm.provider,
                             vm.instance_id)
            continue
        deleted = delete_cloud_vm(vm.delete_info, settings=settings)
        context.log.warning("VM %s (%s %s) %s", vm.name, vm.provider, vm.instance_id,
                            "deleted" if deleted else "was already gone")
    return not config.dry_run


@job(tags=ACTION_TAGS, description="Deploy a recipe variant on this machine.")
def deploy_local_job():
    deploy_local()


@job(tags=ACTION_TAGS, description="Deploy a recipe variant on a host over SSH.")
def deploy_ssh_job():
    deploy_ssh()


@job(tags=ACTION_TAGS, description="Deploy a recipe variant on a fresh cloud VM.")
def deploy_cloud_job():
    deploy_cloud()


@job(tags=ACTION_TAGS, description="Stop the engine a deploy started.")
def teardown_job():
    teardown_deploy()


@job(tags=ACTION_TAGS, description="Create a managed GPU VM that stays after the run.")
def vm_create_job():
    create_vm()


@job(tags=ACTION_TAGS, description="Delete a managed VM by name or instance id.")
def vm_delete_job():
    delete_named_vm()
