"""`deplodock vm`: create, delete and list cloud VMs by hand.

    deplodock vm create cloudrift --gpu rtx4090 [--gpu-count 1] [--ssh-key ~/.ssh/id_ed25519]
    deplodock vm create gcp --gpu h100 --gpu-count 8 [--zone us-central1-a] [--dry-run]
    deplodock vm create cloudrift --instance-type rtx49-7c-kn.1 --name my-box
    deplodock vm delete cloudrift --instance-id ID      (or --name NAME)
    deplodock vm delete gcp --name NAME [--zone ZONE]      (no zone: found by listing)
    deplodock vm delete fixed --instance-id HOST        (releases a fixed host)
    deplodock vm list [--run-id RUN] [--json]
    deplodock vm keys cloudrift [--add ~/.ssh/id_ed25519.pub --name laptop]

Credentials and endpoints come from the environment (see `CloudSettings.from_env`):
CLOUDRIFT_API_KEY, GCP_PROJECT, GCP_ZONE, GOOGLE_APPLICATION_CREDENTIALS, ... Dry runs print
the API calls they would make (method, URL, body) with keys redacted, and send nothing.
VMs made here carry a `cli-...` run label: a Dagster reconciler watching the same account
deletes VMs of unknown runs after its grace period.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets

from deplodock_dagster.errors import ConfigError

CLOUD_PROVIDERS = ("cloudrift", "gcp")
DRY_RUN_KEY = "ssh-ed25519 AAAA-your-public-key-here you@host"


def register(subparsers) -> None:
    """Add the `vm` subcommand tree."""
    vm = subparsers.add_parser(
        "vm", help="create, delete and list cloud VMs by hand",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = vm.add_subparsers(dest="vm_action", metavar="ACTION")
    actions.required = True

    create = actions.add_parser("create", help="create a VM and wait until SSH works")
    create_providers = create.add_subparsers(dest="provider", metavar="PROVIDER")
    create_providers.required = True
    for provider in CLOUD_PROVIDERS:
        parser = create_providers.add_parser(provider, help=f"create a {provider} VM")
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--gpu", help="GPU, full or short name (e.g. h100, rtx4090)")
        what.add_argument("--instance-type",
                          help="exact type (CloudRift rtx49-7c-kn.1, GCP a3-highgpu-8g)")
        parser.add_argument("--gpu-count", type=int, default=1, help="GPUs (default 1)")
        parser.add_argument("--ssh-key",
                            help="SSH key put on the VM: private key (its .pub is used) or "
                                 ".pub file (default $DEPLODOCK_SSH_KEY or ~/.ssh/id_ed25519)")
        parser.add_argument("--name",
                            help="VM name (default deplodock-cli<random>-<gpu>x<N>-<random>)")
        if provider == "gcp":
            parser.add_argument("--zone", help="zone (default $GCP_ZONE or the GPU's first)")
            parser.add_argument("--provisioning-model",
                                choices=("STANDARD", "SPOT", "FLEX_START"),
                                help="default: the GPU's model in hardware.py")
        parser.add_argument("--dry-run", action="store_true",
                            help="print the API calls instead of making them")
        parser.set_defaults(func=_create)

    delete = actions.add_parser("delete", help="delete a VM (safe to repeat)")
    delete_providers = delete.add_subparsers(dest="provider", metavar="PROVIDER")
    delete_providers.required = True
    for provider in (*CLOUD_PROVIDERS, "fixed"):
        parser = delete_providers.add_parser(provider, help=f"delete a {provider} VM")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--instance-id", help="instance id (fixed: the host's name)")
        target.add_argument("--name", help="VM name")
        if provider == "gcp":
            parser.add_argument("--zone", help="zone (default $GCP_ZONE, else found by "
                                               "listing deplodock's VMs)")
        parser.add_argument("--dry-run", action="store_true",
                            help="print the API calls instead of making them")
        parser.set_defaults(func=_delete)

    keys = actions.add_parser(
        "keys", help="list (or register) SSH keys on the CloudRift account",
        description="VMs made by deplodock get the key inline; registered keys are for "
                    "VMs made elsewhere (e.g. CloudRift's console).",
    )
    keys.add_argument("provider", choices=("cloudrift",))
    keys.add_argument("--add", metavar="PUBLIC_KEY_FILE", help="register this public key")
    keys.add_argument("--name", help="name for the added key (default: the file name)")
    keys.set_defaults(func=_keys)

    listing = actions.add_parser("list", help="VMs made by deplodock on every configured cloud")
    listing.add_argument("--run-id", help="only the VMs of this run")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(func=_list)


def _settings(args, dry_run: bool = False):
    from deplodock_dagster.deploy.cloud import CloudSettings

    settings = CloudSettings.from_env()
    changes: dict = {"providers": (args.provider,)} if getattr(args, "provider", None) else {}
    key = getattr(args, "ssh_key", None)
    if key:
        key = os.path.expanduser(key)
        if key.endswith(".pub"):
            changes["ssh_public_key_path"] = key
        else:
            changes["ssh_key_path"] = key
            changes["ssh_public_key_path"] = key + ".pub"
    if getattr(args, "zone", None):
        changes["gcp_zone"] = args.zone
    if getattr(args, "provisioning_model", None):
        changes["gcp_provisioning_model"] = args.provisioning_model
    if dry_run:  # show the calls even without credentials
        changes["cloudrift_api_key"] = settings.cloudrift_api_key or "<CLOUDRIFT_API_KEY>"
        changes["gcp_project"] = settings.gcp_project or "your-project"
        changes["gcp_anonymous"] = True
    return settings.replace(**changes)


def _specs(args, settings):
    from deplodock_dagster import hardware
    from deplodock_dagster.deploy.cloud import resolve_vm_spec
    from deplodock_dagster.vm.types import VMSpec

    run_id = f"cli-{secrets.token_hex(3)}"  # VM names start deplodock-cli<6 hex>-
    public_key = None
    if args.dry_run:
        try:
            public_key = settings.public_key()
        except ConfigError:
            public_key = DRY_RUN_KEY
    if args.gpu:
        gpu = hardware.resolve_gpu_name(args.gpu)
        group = f"{hardware.gpu_short_name(gpu)}x{args.gpu_count}"
        offered = [p for p, _ in hardware.instance_types(gpu)]
        if args.provider not in offered:
            raise ConfigError(f"{args.provider} offers no {gpu}; it is offered by: "
                              f"{', '.join(offered) or 'nobody'} (see hardware.py)")
        specs = resolve_vm_spec(gpu, args.gpu_count, settings=settings, run_id=run_id,
                                group_label=group, name=args.name, ssh_public_key=public_key)
        return [spec for spec in specs if spec.provider == args.provider]
    from deplodock_dagster.vm.naming import is_valid_name, vm_labels, vm_name

    name = args.name or vm_name(run_id, args.instance_type)
    if not is_valid_name(name):
        raise ConfigError(f"--name {name!r}: use 1-63 of a-z, 0-9 and '-', starting with a letter")
    gcp = args.provider == "gcp"
    return [VMSpec(
        provider=args.provider, instance_type=args.instance_type, gpu_name="",
        gpu_count=args.gpu_count, name=name, ssh_public_key=public_key or settings.public_key(),
        ssh_user=settings.gcp_ssh_user if gcp else "riftuser",
        labels=vm_labels(run_id, args.instance_type), ports=tuple(settings.ports),
        zone=(settings.gcp_zone or None) if gcp else None,
        max_run_duration_s=settings.gcp_max_run_duration_s if gcp else None,
    )]


def _create(args) -> int:
    from deplodock_dagster.deploy.cloud import make_provider, provision_from_specs

    if args.gpu_count < 1:
        raise ConfigError("--gpu-count must be at least 1")
    settings = _settings(args, dry_run=args.dry_run)
    specs = _specs(args, settings)
    if args.dry_run:
        for number, spec in enumerate(specs, 1):
            where = spec.instance_type + (f" in {spec.zone}" if spec.zone else "")
            print(f"# candidate {number} of {len(specs)}: {args.provider} {where}"
                  + (" (tried only if the previous one has no capacity)" if number > 1 else ""))
            provider = make_provider(spec.provider, settings, spec.gpu_name or None)
            for call in provider.plan_create(spec):
                print(call.format())
        print("# then: wait for SSH; nothing was sent (dry run)")
        return 0
    conn = provision_from_specs(specs, settings=settings)
    print(f"created {conn.provider} VM {conn.name} (id {conn.instance_id})")
    print(f"  ssh -p {conn.ssh_port} {conn.username}@{conn.host}")
    for inner, outer in conn.port_mappings:
        if inner != 22:
            print(f"  port {inner} -> {conn.host}:{outer}")
    print(f"  delete: {_delete_command(conn.delete_info)}")
    return 0


def _delete_command(info: dict) -> str:
    if info.get("provider") == "gcp":
        return f"deplodock vm delete gcp --name {info['name']} --zone {info['zone']}"
    return f"deplodock vm delete {info.get('provider')} --instance-id {info['instance_id']}"


def _delete(args) -> int:
    from deplodock_dagster.deploy.cloud import delete_cloud_vm, list_managed_vms, make_provider

    settings = _settings(args, dry_run=args.dry_run)
    if args.provider == "gcp":
        name = args.name or args.instance_id
        zone = args.zone or settings.gcp_zone
        if zone:
            infos = [{"provider": "gcp", "project": settings.gcp_project, "zone": zone,
                      "name": name, "instance_id": name}]
        else:  # find the zone by listing our VMs
            infos = [vm.delete_info for vm in list_managed_vms(settings)
                     if vm.provider == "gcp" and vm.name == name]
            if not infos:
                raise ConfigError(f"no managed GCP VM named {name!r} found in any zone; "
                                  "give --zone to delete one deplodock did not label")
    elif args.instance_id:
        infos = [{"provider": args.provider, "instance_id": args.instance_id}]
    else:
        infos = [vm.delete_info for vm in list_managed_vms(settings)
                 if vm.provider == args.provider and vm.name == args.name]
        if not infos:
            raise ConfigError(f"no {args.provider} VM named {args.name!r} (see `deplodock vm "
                              "list`)")
    for info in infos:
        if args.dry_run:
            for call in make_provider(args.provider, settings).plan_delete(info):
                print(call.format())
            continue
        deleted = delete_cloud_vm(info, settings=settings)
        what = info.get("name") or info.get("instance_id")
        print(f"{args.provider} VM {what}: {'deleted' if deleted else 'already gone'}")
    if args.dry_run:
        print("# nothing was sent (dry run)")
    return 0


def _list(args) -> int:
    from deplodock_dagster.deploy.cloud import CloudSettings, list_managed_vms
    from deplodock_dagster.vm.types import GROUP_LABEL, RUN_LABEL

    vms = list_managed_vms(CloudSettings.from_env(), run_id=args.run_id)
    if args.json:
        print(json.dumps([vars(vm) for vm in vms], indent=2, sort_keys=True))
        return 0
    if not vms:
        print("no VMs" + (f" for run {args.run_id}" if args.run_id else ""))
        return 0
    rows = [("PROVIDER", "NAME", "ID", "STATUS", "RUN", "GROUP")] + [
        (vm.provider, vm.name, vm.instance_id, vm.status, vm.labels.get(RUN_LABEL, ""),
         vm.labels.get(GROUP_LABEL, "")) for vm in vms
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _keys(args) -> int:
    from pathlib import Path

    from deplodock_dagster.deploy.cloud import make_provider

    provider = make_provider("cloudrift", _settings(args))
    if args.add:
        path = Path(os.path.expanduser(args.add))
        try:
            public_key = path.read_text().strip()
        except OSError as error:
            raise ConfigError(f"{path}: cannot read the public key: {error.strerror}") from None
        if not public_key.startswith(("ssh-", "ecdsa-", "sk-")):
            raise ConfigError(f"{path}: not an OpenSSH public key (use the .pub file)")
        key_id = provider.ensure_ssh_key(args.name or path.name, public_key)
        print(f"key {path.name}: id {key_id}")
        return 0
    for key in provider.client.list_ssh_keys():
        fields = str(key.get("public_key", "")).split()
        short = f"{fields[0]} ...{fields[1][-12:]}" if len(fields) > 1 else "?"
        print(f"{key.get('id')}  {key.get('name')}  {short}")
    return 0
