"""`deplodock deploy local|ssh|cloud`: put a recipe's engine on a host, optionally benchmark.

    deplodock deploy local --recipe recipes/tiny-cpu --runtime process
    deplodock deploy ssh --recipe recipes/GLM-4.6-FP8 --variant 8xH200 --server ubuntu@host
    deplodock deploy ssh ... --dry-run        print the exact commands, run nothing
    deplodock deploy ssh ... --teardown       stop what an earlier deploy started
    deplodock deploy cloud --recipe ... --bench   VM, deploy, benchmark, teardown, delete VM

With --bench the benchmark runs after the deploy, the result is stored under
--results-dir, and the engine is torn down afterwards.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid

from deplodock_dagster.errors import ConfigError, DeplodockError, RecipeError
from deplodock_dagster.secrets import redact, register_secret

logger = logging.getLogger(__name__)

RUNTIME_CHOICES = ("docker-compose", "process")


def register(subparsers) -> None:
    """Add `deploy` and its targets to the top-level parser."""
    deploy = subparsers.add_parser(
        "deploy",
        help="deploy a recipe's engine on this machine, a server over SSH, or a cloud VM",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    targets = deploy.add_subparsers(dest="target", metavar="TARGET")
    targets.required = True

    local = targets.add_parser(
        "local", help="deploy on this machine",
        description="Deploy a recipe variant on this machine.",
    )
    _common_flags(local)
    local.set_defaults(func=cmd_local)

    ssh = targets.add_parser(
        "ssh", help="deploy on a server over SSH",
        description="Deploy a recipe variant on a server over SSH (key auth; the server's "
                    "host key must be in known_hosts unless --accept-new-host-key).",
    )
    _common_flags(ssh)
    ssh.add_argument("--server", required=True, metavar="USER@HOST",
                     help="the server to deploy on, e.g. ubuntu@203.0.113.7")
    _ssh_flags(ssh)
    ssh.set_defaults(func=cmd_ssh)

    cloud = targets.add_parser(
        "cloud", help="provision a cloud VM, deploy, (benchmark), tear down, delete the VM",
        description="Provision a VM with the variant's GPUs (deploy.cloud), deploy on it, "
                    "benchmark with --bench, tear down, and always delete the VM.",
    )
    _common_flags(cloud, with_teardown=False)
    _ssh_flags(cloud, with_port=False)
    cloud.set_defaults(func=cmd_cloud)


def _common_flags(parser: argparse.ArgumentParser, with_teardown: bool = True) -> None:
    parser.add_argument("--recipe", required=True, metavar="DIR",
                        help="recipe folder (holding recipe.yaml) or recipe file")
    parser.add_argument("--variant", metavar="NAME",
                        help="variant to deploy, e.g. 8xH200 (optional if there is only one)")
    parser.add_argument("--hf-token", default=None, metavar="TOKEN",
                        help="Hugging Face token for gated models (default: $HF_TOKEN); "
                             "reaches the host only in a 0600 env file")
    parser.add_argument("--model-dir", default=None, metavar="DIR",
                        help="model cache on the host (default: $DEPLODOCK_MODEL_DIR or "
                             "/hf_models)")
    parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default=None,
                        help="how the engine runs (default: the recipe's, else docker-compose)")
    parser.add_argument("--engine-python", default=None, metavar="PATH",
                        help="python of the venv holding the engine, for --runtime process "
                             "(default: $DEPLODOCK_ENGINE_PYTHON)")
    parser.add_argument("--deploy-dir", default=None, metavar="DIR",
                        help="working directory on the host (default: ~/deplodock)")
    parser.add_argument("--port", type=int, default=None,
                        help="port the engine serves on (default: 8000)")
    parser.add_argument("--health-timeout", type=float, default=None, metavar="SECONDS",
                        help="how long to wait for the engine to become healthy")
    parser.add_argument("--install-missing", action="store_true",
                        help="install docker, the compose plugin, the NVIDIA toolkit or curl "
                             "with apt when the host lacks them")
    parser.add_argument("--bench", action="store_true",
                        help="benchmark after deploying, store the result, then tear down")
    parser.add_argument("--results-dir", default=None, metavar="DIR",
                        help="where --bench stores results (default: $DEPLODOCK_RESULTS_DIR "
                             "or ./results)")
    parser.add_argument("--force", action="store_true",
                        help="with --bench: run even if a result is already stored")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the exact commands and files, run nothing")
    if with_teardown:
        parser.add_argument("--teardown", action="store_true",
                            help="tear down an existing deploy instead of deploying")


def _ssh_flags(parser: argparse.ArgumentParser, with_port: bool = True) -> None:
    parser.add_argument("--ssh-key", default=None, metavar="PATH",
                        help="private key (default: $DEPLODOCK_SSH_KEY or ~/.ssh/id_ed25519)")
    if with_port:
        parser.add_argument("--ssh-port", type=int, default=22, help="SSH port (default: 22)")
        parser.add_argument("--known-hosts", default=None, metavar="PATH",
                            help="known_hosts file (default: $DEPLODOCK_KNOWN_HOSTS or "
                                 "~/.ssh/known_hosts)")
        parser.add_argument("--accept-new-host-key", action="store_true",
                            help="record the server's host key at first contact instead of "
                                 "requiring it in known_hosts")


# Building blocks.


def _settings(args):
    from deplodock_dagster.bench.settings import BenchSettings

    token = args.hf_token if args.hf_token is not None else os.environ.get("HF_TOKEN")
    register_secret(token)
    return BenchSettings.from_env(
        hf_token=token or None,
        model_dir=args.model_dir,
        runtime=args.runtime,
        engine_python=args.engine_python,
        deploy_dir=args.deploy_dir,
        port=args.port,
        health_timeout_s=args.health_timeout,
        results_dir=args.results_dir,
        ssh_key_path=getattr(args, "ssh_key", None),
        known_hosts_path=getattr(args, "known_hosts", None),
        install_missing=args.install_missing or None,
        force=args.force or None,
    )


def _recipes(args):
    """The resolved recipe points of --recipe/--variant (one unless the variant sweeps)."""
    from deplodock_dagster.recipe import load_recipe, resolve_variant

    variant = args.variant
    if variant is None:
        variants = load_recipe(args.recipe).variants
        if len(variants) != 1:
            raise RecipeError(args.recipe, "variants",
                              f"{len(variants)} variants: {', '.join(variants)}",
                              "choose one with --variant")
        variant = variants[0]
    return resolve_variant(args.recipe, variant)


def _params(recipe, host, settings, dry_run: bool):
    from deplodock_dagster.bench.runner import deploy_params_for
    from deplodock_dagster.planner import BenchmarkTask

    params = deploy_params_for(BenchmarkTask(recipe), host, settings)
    params.dry_run = dry_run
    return params


def _split_server(server: str) -> tuple[str, str]:
    if "@" not in server:
        raise ConfigError(f"--server {server!r}: expected USER@HOST, e.g. ubuntu@203.0.113.7")
    user, address = server.rsplit("@", 1)
    if not user or not address:
        raise ConfigError(f"--server {server!r}: expected USER@HOST")
    return user, address


def _dry_run_host(name: str, address: str | None, user: str | None):
    from deplodock_dagster.deploy.runtimes.common import HOME_SCRIPT
    from deplodock_dagster.hosts import DryRunHost

    home = "/root" if user in (None, "root") else f"/home/{user}"
    if user is None:
        home = os.path.expanduser("~")
    host = DryRunHost(name=name, outputs={f"sh -c {_quote(HOME_SCRIPT)}": home})
    host.address = address or "127.0.0.1"
    return host


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _print_transcript(host) -> None:
    print(f"# dry run on {host.name}: nothing was run; these commands and files would be:")
    for line in host.transcript(with_content=True):
        print(redact(line))


def _run(args, host, settings, *, address_for_print: str) -> int:
    """Deploy (or tear down, or deploy + bench + teardown) on `host`; returns exit code."""
    from deplodock_dagster.deploy import deploy, run_teardown

    recipes = _recipes(args)
    if len(recipes) > 1 and not args.bench:
        logger.info("variant sweeps %d points; deploying the first (%s)", len(recipes),
                    recipes[0].sweep_label)

    if getattr(args, "teardown", False):
        params = _params(recipes[0], host, settings, args.dry_run)
        stopped = run_teardown(params)
        if args.dry_run:
            _print_transcript(host)
        else:
            print("engine stopped" if stopped else "nothing was running")
        return 0

    if args.dry_run:
        return _dry_run(args, host, settings, recipes)

    if args.bench:
        return _bench(args, host, settings, recipes)

    outcome = deploy(_params(recipes[0], host, settings, False))
    print(f"{outcome.runtime}: {outcome.served_model_name} serves at {outcome.endpoint}")
    extra = "".join(f"--{flag.replace('_', '-')} {getattr(args, flag)} "
                    for flag in ("deploy_dir", "runtime") if getattr(args, flag))
    print(f"tear down with: deplodock deploy {args.target} --recipe {args.recipe} "
          f"--variant {recipes[0].variant} {address_for_print}{extra}--teardown")
    return 0


def _dry_run(args, host, settings, recipes) -> int:
    from deplodock_dagster.bench.workload import run_benchmark_workload
    from deplodock_dagster.deploy import deploy, run_teardown

    from deplodock_dagster.deploy.runtimes.common import with_resolved_dirs

    params = with_resolved_dirs(_params(recipes[0], host, settings, True))
    deploy(params)
    if args.bench:
        run_benchmark_workload(params)
        run_teardown(params)
    _print_transcript(host)
    return 0


def _bench(args, host, settings, recipes) -> int:
    from deplodock_dagster.bench.runner import run_task
    from deplodock_dagster.bench.store import ResultStore
    from deplodock_dagster.planner import BenchmarkTask

    store = ResultStore(settings.results_dir)
    run_id = f"cli-{uuid.uuid4().hex[:8]}"
    failed = 0
    for recipe in recipes:
        result = run_task(BenchmarkTask(recipe), host, settings, store, run_id,
                          force=args.force)
        _print_result(result, store)
        failed += result.outcome == "failed"
    return 1 if failed else 0


def _print_result(result, store) -> None:
    line = f"{result.task_id}: {result.outcome}"
    if result.metrics:
        line += (f" ({result.metrics.successful_requests} requests, "
                 f"{result.metrics.output_throughput_tok_s:.1f} output tok/s)")
    print(line)
    if result.error:
        print(redact(result.error), file=sys.stderr)
    if result.outcome != "skipped":
        print(f"stored in {store.task_dir(result.task_id)}")


# Targets.


def cmd_local(args) -> int:
    """`deplodock deploy local`."""
    from deplodock_dagster.hosts import LocalHost

    settings = _settings(args)
    host = _dry_run_host("local", None, None) if args.dry_run else LocalHost()
    return _run(args, host, settings, address_for_print="")


def cmd_ssh(args) -> int:
    """`deplodock deploy ssh`."""
    user, address = _split_server(args.server)
    settings = _settings(args)
    server_flag = f"--server {args.server} "
    if args.dry_run:
        host = _dry_run_host(f"{user}@{address}:{args.ssh_port}", address, user)
        return _run(args, host, settings, address_for_print=server_flag)

    from deplodock_dagster.hosts.ssh import SSHHost

    key = settings.ssh_key_path or os.path.expanduser("~/.ssh/id_ed25519")
    known_hosts = settings.known_hosts_path or os.path.expanduser("~/.ssh/known_hosts")
    policy = "record" if args.accept_new_host_key else "strict"
    with SSHHost(address, args.ssh_port, user, key, known_hosts_path=known_hosts,
                 host_key_policy=policy) as host:
        return _run(args, host, settings, address_for_print=server_flag)


def cmd_cloud(args) -> int:
    """`deplodock deploy cloud`: VM, deploy, optional bench, teardown; the VM is always
    deleted, or a loud message names it."""
    from deplodock_dagster.deploy.cloud import CloudSettings, delete_cloud_vm, provision_cloud_vm
    from deplodock_dagster.hosts import connect_checked

    settings = _settings(args)
    recipes = _recipes(args)
    recipe = recipes[0]
    if args.dry_run:
        print(f"# dry run: would provision {recipe.gpu_count} x {recipe.gpu_name}, deploy "
              f"{recipe.task_id} ({settings.runtime_for(recipe.runtime)} runtime)"
              f"{', benchmark' if args.bench else ''}, tear down and delete the VM")
        return 0

    cloud_settings = CloudSettings.from_env()
    run_id = f"cli-{uuid.uuid4().hex[:8]}"
    conn = provision_cloud_vm(recipe.gpu_name, recipe.gpu_count, settings=cloud_settings,
                              run_id=run_id, group_label="deploy")
    print(f"VM {conn.name} ({conn.provider} {conn.instance_id}) at {conn.host}")
    code = 1
    try:
        key = settings.ssh_key_path or str(cloud_settings.private_key_path())
        known_hosts = settings.known_hosts_path or cloud_settings.known_hosts_path
        host = connect_checked(conn, key_path=key, known_hosts_path=known_hosts)
        try:
            if args.bench:
                code = _bench(args, host, settings, recipes)
            else:
                from deplodock_dagster.deploy import deploy, teardown

                params = _params(recipe, host, settings, False)
                try:
                    outcome = deploy(params)
                    print(f"{outcome.runtime}: {outcome.served_model_name} served at "
                          f"{outcome.endpoint}; smoke test passed")
                    code = 0
                finally:
                    teardown(params)
        finally:
            host.close()
    finally:
        _delete_vm(delete_cloud_vm, conn, cloud_settings)
    return code


def _delete_vm(delete_cloud_vm, conn, cloud_settings) -> None:
    try:
        delete_cloud_vm(conn.delete_info, settings=cloud_settings, dry_run=False)
        print(f"VM {conn.name} deleted")
    except DeplodockError as error:
        print(f"deplodock: VM {conn.name} ({conn.provider} {conn.instance_id}) was NOT "
              f"deleted: {redact(str(error))}\nDelete it by hand (delete info: "
              f"{conn.delete_info}) or with `deplodock vm delete`.", file=sys.stderr)
        raise
