"""The bridge between deploying and the VM providers: the only module importing `vm/<x>`.

    specs = resolve_vm_spec(gpu, count, settings=s, run_id=r, group_label=g)
    conn = provision_cloud_vm(gpu, count, settings=s, run_id=r, group_label=g)
    delete_cloud_vm(conn.delete_info, settings=s)      # idempotent
    list_managed_vms(s, run_id=r)                      # what a run left behind

Candidates come from hardware.py in preference order (fixed hosts first when one matches);
a CapacityError moves on to the next candidate, any other error stops. A VM that never
accepts SSH is deleted before the error is raised. Every VM's name and labels carry the run
id and the group label, so reconciliation finds it without memory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from deplodock_dagster import hardware
from deplodock_dagster.envvars import env_flag, env_list, env_positive, env_text
from deplodock_dagster.errors import (
    CapacityError,
    ConfigError,
    DeplodockError,
    HostError,
    VMLeakError,
)
from deplodock_dagster.secrets import register_secret
from deplodock_dagster.vm.naming import label_value, vm_labels, vm_name
from deplodock_dagster.vm.types import RUN_LABEL, VMConnectionInfo, VMProvider, VMSpec, VMSummary

logger = logging.getLogger(__name__)

PROVIDERS = ("fixed", "cloudrift", "gcp")
DEFAULT_SSH_KEY = "~/.ssh/id_ed25519"
DEFAULT_PORTS = (22, 8000)


@dataclass(frozen=True)
class CloudSettings:
    """Credentials, endpoints and patience for every provider. `from_env()` reads them."""

    # CloudRift
    cloudrift_api_key: str | None = field(default=None, repr=False)
    cloudrift_api_url: str = "https://api.cloudrift.ai"
    cloudrift_api_version: str = "~upcoming"
    cloudrift_image_url: str | None = None  # None: the provider's default image
    cloudrift_cloudinit_url: str | None = None
    # Google Compute Engine
    gcp_project: str | None = None
    gcp_zone: str | None = None  # None: the zones hardware.py lists for the GPU
    gcp_compute_endpoint: str | None = None  # None: the real API
    gcp_credentials_file: str | None = None  # None: google.auth.default()
    gcp_anonymous: bool = False  # no credentials at all: only for fake APIs in tests
    gcp_service_account: str | None = None
    gcp_network_tags: tuple[str, ...] = ()
    gcp_image: str | None = None
    gcp_disk_size_gb: int = 500
    gcp_provisioning_model: str | None = None  # None: hardware.py's model for the GPU
    gcp_ssh_user: str = "deplodock"
    gcp_max_run_duration_s: int = 8 * 3600  # Google deletes the VM after this: a last net
    gcp_capacity_wait_s: int = 2 * 3600
    # Fixed hosts
    fixed_hosts_file: str | None = None
    fixed_hosts: tuple[dict, ...] = ()  # entries as in the hosts file, besides or instead
    fixed_lock_dir: str | None = None
    # SSH
    ssh_key_path: str | None = None  # private key; the public key is next to it (.pub)
    ssh_public_key_path: str | None = None
    known_hosts_path: str | None = None
    # Which providers may be used (None: every configured one)
    providers: tuple[str, ...] | None = None
    # Patience
    poll_interval_s: float = 10.0
    ready_deadline_s: float = 900.0
    operation_deadline_s: float = 3 * 3600.0
    ssh_deadline_s: float = 600.0
    ssh_poll_interval_s: float = 5.0
    ssh_per_try_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    retry_attempts: int = 4
    retry_backoff_s: float = 2.0
    ports: tuple[int, ...] = DEFAULT_PORTS

    def __post_init__(self):
        register_secret(self.cloudrift_api_key)

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides) -> CloudSettings:
        """Settings from environment variables; keyword `overrides` win (None ignored).

        CLOUDRIFT_API_KEY, CLOUDRIFT_API_URL, CLOUDRIFT_API_VERSION, CLOUDRIFT_IMAGE_URL,
        GCP_PROJECT, GCP_ZONE, GCP_COMPUTE_ENDPOINT, GCP_CREDENTIALS_FILE,
        GCP_SERVICE_ACCOUNT, GCP_NETWORK_TAGS (comma-separated), GCP_IMAGE,
        GCP_PROVISIONING_MODEL, GCP_SSH_USER, GCP_MAX_RUN_DURATION_S,
        DEPLODOCK_GCP_ANONYMOUS=1 (fake APIs only), DEPLODOCK_FIXED_HOSTS,
        DEPLODOCK_FIXED_LOCK_DIR, DEPLODOCK_SSH_KEY, DEPLODOCK_SSH_PUBLIC_KEY,
        DEPLODOCK_KNOWN_HOSTS, DEPLODOCK_PROVIDERS (comma-separated allow-list),
        DEPLODOCK_VM_POLL_INTERVAL_S, DEPLODOCK_VM_READY_DEADLINE_S,
        DEPLODOCK_SSH_DEADLINE_S, DEPLODOCK_SSH_POLL_INTERVAL_S, DEPLODOCK_CLOUD_RETRIES,
        DEPLODOCK_CLOUD_BACKOFF_S.
        """
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            return env_text(env, name)

        def number(name: str, kind=float):
            return env_positive(env, name, kind)

        def names(name: str) -> tuple[str, ...] | None:
            return env_list(env, name)

        values = {
            "cloudrift_api_key": text("CLOUDRIFT_API_KEY"),
            "cloudrift_api_url": text("CLOUDRIFT_API_URL"),
            "cloudrift_api_version": text("CLOUDRIFT_API_VERSION"),
            "cloudrift_image_url": text("CLOUDRIFT_IMAGE_URL"),
            "cloudrift_cloudinit_url": text("CLOUDRIFT_CLOUDINIT_URL"),
            "gcp_project": text("GCP_PROJECT") or text("GOOGLE_CLOUD_PROJECT"),
            "gcp_zone": text("GCP_ZONE"),
            "gcp_compute_endpoint": text("GCP_COMPUTE_ENDPOINT"),
            "gcp_credentials_file": text("GCP_CREDENTIALS_FILE"),
            "gcp_anonymous": env_flag(env, "DEPLODOCK_GCP_ANONYMOUS"),
            "gcp_service_account": text("GCP_SERVICE_ACCOUNT"),
            "gcp_network_tags": names("GCP_NETWORK_TAGS"),
            "gcp_image": text("GCP_IMAGE"),
            "gcp_provisioning_model": text("GCP_PROVISIONING_MODEL"),
            "gcp_ssh_user": text("GCP_SSH_USER"),
            "gcp_max_run_duration_s": number("GCP_MAX_RUN_DURATION_S", int),
            "fixed_hosts_file": text("DEPLODOCK_FIXED_HOSTS"),
            "fixed_lock_dir": text("DEPLODOCK_FIXED_LOCK_DIR"),
            "ssh_key_path": text("DEPLODOCK_SSH_KEY"),
            "ssh_public_key_path": text("DEPLODOCK_SSH_PUBLIC_KEY"),
            "known_hosts_path": text("DEPLODOCK_KNOWN_HOSTS"),
            "providers": names("DEPLODOCK_PROVIDERS"),
            "poll_interval_s": number("DEPLODOCK_VM_POLL_INTERVAL_S"),
            "ready_deadline_s": number("DEPLODOCK_VM_READY_DEADLINE_S"),
            "ssh_deadline_s": number("DEPLODOCK_SSH_DEADLINE_S"),
            "ssh_poll_interval_s": number("DEPLODOCK_SSH_POLL_INTERVAL_S"),
            "retry_attempts": number("DEPLODOCK_CLOUD_RETRIES", int),
            "retry_backoff_s": number("DEPLODOCK_CLOUD_BACKOFF_S"),
        }
        values.update(overrides)
        chosen = {key: value for key, value in values.items() if value is not None}
        if not chosen.get("gcp_anonymous"):
            chosen.pop("gcp_anonymous", None)
        settings = cls(**chosen)
        settings.check()
        return settings

    def replace(self, **changes) -> CloudSettings:
        return dataclasses.replace(self, **changes)

    def check(self) -> None:
        """ConfigError for values that cannot work."""
        unknown = sorted(set(self.providers or ()) - set(PROVIDERS))
        if unknown:
            raise ConfigError(
                f"DEPLODOCK_PROVIDERS: unknown provider(s) {', '.join(unknown)}; "
                f"known: {', '.join(PROVIDERS)}"
            )

    # What is usable.

    def allowed(self, provider: str) -> bool:
        return self.providers is None or provider in self.providers

    def configured(self, provider: str) -> str | None:
        """None if `provider` can be used, else why not."""
        if not self.allowed(provider):
            return f"{provider} is not in DEPLODOCK_PROVIDERS"
        if provider == "cloudrift" and not self.cloudrift_api_key:
            return "cloudrift needs CLOUDRIFT_API_KEY"
        if provider == "gcp" and not self.gcp_project:
            return "gcp needs GCP_PROJECT"
        if provider == "fixed" and not (self.fixed_hosts_file or self.fixed_hosts):
            return "fixed hosts need DEPLODOCK_FIXED_HOSTS (a hosts YAML file)"
        return None

    def private_key_path(self) -> Path:
        return Path(os.path.expanduser(self.ssh_key_path or DEFAULT_SSH_KEY))

    def public_key(self) -> str:
        """The SSH public key line put on new VMs; ConfigError naming the file if missing."""
        path = Path(os.path.expanduser(
            self.ssh_public_key_path or f"{self.private_key_path()}.pub"
        ))
        try:
            line = path.read_text().strip()
        except OSError as error:
            raise ConfigError(
                f"{path}: cannot read the SSH public key for new VMs ({error.strerror}); set "
                "DEPLODOCK_SSH_KEY (private key, .pub next to it) or DEPLODOCK_SSH_PUBLIC_KEY"
            ) from error
        if not line.startswith(("ssh-", "ecdsa-", "sk-")):
            raise ConfigError(f"{path}: not an OpenSSH public key line")
        return line


def make_provider(name: str, settings: CloudSettings, gpu_name: str | None = None) -> VMProvider:
    """The provider object for `name`, configured from settings (imports it lazily)."""
    from deplodock_dagster.vm.retry import RetryPolicy

    retry = RetryPolicy(max_attempts=settings.retry_attempts,
                        backoff_base_s=settings.retry_backoff_s)
    if name == "cloudrift":
        from deplodock_dagster.vm import cloudrift

        if not settings.cloudrift_api_key:
            raise ConfigError("CloudRift needs an API key: set CLOUDRIFT_API_KEY")
        config = cloudrift.CloudRiftConfig(
            api_key=settings.cloudrift_api_key,
            api_url=settings.cloudrift_api_url,
            api_version=settings.cloudrift_api_version,
            image_url=settings.cloudrift_image_url or cloudrift.DEFAULT_IMAGE_URL,
            cloudinit_url=settings.cloudrift_cloudinit_url or cloudrift.DEFAULT_CLOUDINIT_URL,
            request_timeout_s=settings.request_timeout_s,
            poll_interval_s=settings.poll_interval_s,
            ready_deadline_s=settings.ready_deadline_s,
            retry=retry,
        )
        return cloudrift.CloudRiftProvider(config)
    if name == "gcp":
        from deplodock_dagster.vm import gcp

        if not settings.gcp_project:
            raise ConfigError("GCP needs a project: set GCP_PROJECT")
        model = settings.gcp_provisioning_model or (
            hardware.gcp_provisioning_model(gpu_name) if gpu_name else gcp.FLEX_START
        )
        config = gcp.GcpConfig(
            project=settings.gcp_project,
            zone=settings.gcp_zone,
            endpoint=settings.gcp_compute_endpoint,
            credentials=_gcp_credentials(settings),
            image=settings.gcp_image or gcp.DEFAULT_IMAGE,
            disk_size_gb=settings.gcp_disk_size_gb,
            service_account=settings.gcp_service_account,
            network_tags=tuple(settings.gcp_network_tags),
            provisioning_model=model,
            max_run_duration_s=settings.gcp_max_run_duration_s,
            capacity_wait_s=settings.gcp_capacity_wait_s,
            request_timeout_s=max(settings.request_timeout_s, 150.0),
            poll_interval_s=settings.poll_interval_s,
            operation_deadline_s=settings.operation_deadline_s,
            ready_deadline_s=settings.ready_deadline_s,
            retry=retry,
        )
        return gcp.GcpProvider(config)
    if name == "fixed":
        from deplodock_dagster.vm import fixed

        return fixed.FixedHostsProvider(
            fixed_hosts(settings), settings.fixed_lock_dir or fixed.DEFAULT_LOCK_DIR
        )
    raise ConfigError(f"unknown provider {name!r}; known: {', '.join(PROVIDERS)}")


def fixed_hosts(settings: CloudSettings) -> list:
    """The fixed hosts of the hosts file and of `settings.fixed_hosts`, checked."""
    from deplodock_dagster.vm.fixed import load_fixed_hosts, parse_fixed_hosts

    if not (settings.fixed_hosts_file or settings.fixed_hosts):
        raise ConfigError("fixed hosts need a hosts file: set DEPLODOCK_FIXED_HOSTS")
    hosts = load_fixed_hosts(settings.fixed_hosts_file) if settings.fixed_hosts_file else []
    hosts += parse_fixed_hosts(list(settings.fixed_hosts), "CloudSettings.fixed_hosts")
    names = [host.name for host in hosts]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"fixed host name(s) {', '.join(twice)} used twice")
    return hosts


def _gcp_credentials(settings: CloudSettings):
    if settings.gcp_anonymous:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    if settings.gcp_credentials_file:
        from google.oauth2 import service_account

        from deplodock_dagster.vm.gcp import CLOUD_PLATFORM_SCOPE

        try:
            return service_account.Credentials.from_service_account_file(
                os.path.expanduser(settings.gcp_credentials_file),
                scopes=[CLOUD_PLATFORM_SCOPE],
            )
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"{settings.gcp_credentials_file}: cannot load GCP credentials: {error}"
            ) from error
    return None  # google.auth.default() when first used


def resolve_vm_spec(gpu_name: str, gpu_count: int, *, settings: CloudSettings, run_id: str,
                    group_label: str, name: str | None = None,
                    ssh_public_key: str | None = None) -> list[VMSpec]:
    """Every VM that could serve `gpu_count` x `gpu_name`, most preferred first.

    A fixed host comes first when one has the GPU; then hardware.py's instance types on each
    configured provider (GCP once per zone). ConfigError, saying what to set, if none.
    `name` replaces the generated VM name; `ssh_public_key` the key read from settings.
    """
    full_name = hardware.resolve_gpu_name(gpu_name)
    name = name or vm_name(run_id, group_label)
    labels = vm_labels(run_id, group_label)
    common = dict(gpu_name=full_name, gpu_count=gpu_count, name=name, labels=labels,
                  ports=tuple(settings.ports))
    specs: list[VMSpec] = []
    skipped: list[str] = []

    if settings.configured("fixed") is None:
        from deplodock_dagster.vm.fixed import FixedHostsProvider

        hosts = FixedHostsProvider(fixed_hosts(settings))
        if hosts.matching(full_name, gpu_count):
            specs.append(VMSpec(provider="fixed", instance_type="fixed", ssh_public_key="",
                                ssh_user="", **common))

    public_key = ssh_public_key
    for provider, base in hardware.instance_types(full_name):
        if provider == "fixed":
            continue  # handled above, whatever the table says
        why_not = settings.configured(provider)
        if why_not:
            skipped.append(why_not)
            continue
        instance_type = hardware.resolve_instance_type(provider, base, gpu_count)
        public_key = public_key or settings.public_key()
        if provider == "cloudrift":
            specs.append(VMSpec(provider=provider, instance_type=instance_type,
                                ssh_public_key=public_key, **common))
            continue
        zones = [settings.gcp_zone] if settings.gcp_zone else hardware.gcp_zones(full_name)
        if not zones:
            skipped.append(f"gcp: no zone known for {full_name}; set GCP_ZONE")
        for zone in zones:
            specs.append(VMSpec(
                provider=provider, instance_type=instance_type, ssh_public_key=public_key,
                ssh_user=settings.gcp_ssh_user, zone=zone,
                max_run_duration_s=settings.gcp_max_run_duration_s, **common,
            ))
    if not specs:
        reasons = "; ".join(skipped) or "no provider offers it"
        raise ConfigError(f"no way to get {gpu_count} x {full_name}: {reasons}")
    return specs


def provision_cloud_vm(gpu_name: str, gpu_count: int, *, settings: CloudSettings, run_id: str,
                       group_label: str) -> VMConnectionInfo:
    """Create a VM for the group and wait until it accepts SSH.

    Tries each candidate of `resolve_vm_spec` in order: CapacityError moves on, anything
    else is raised. If SSH never comes up the VM is deleted and HostError says so.
    """
    specs = resolve_vm_spec(gpu_name, gpu_count, settings=settings, run_id=run_id,
                            group_label=group_label)
    return provision_from_specs(specs, settings=settings)


def provision_from_specs(specs: list[VMSpec], *, settings: CloudSettings) -> VMConnectionInfo:
    """Create the first candidate that has capacity, then wait for SSH (see above)."""
    if not specs:
        raise ConfigError("no VM candidates to try")
    capacity_errors: list[str] = []
    for spec in specs:
        provider = make_provider(spec.provider, settings, spec.gpu_name)
        where = f"{spec.provider} {spec.instance_type}" + (f" in {spec.zone}" if spec.zone else "")
        logger.info("provisioning %s on %s", spec.name, where)
        try:
            conn = provider.create_instance(spec)
        except CapacityError as error:
            logger.info("no capacity on %s, trying the next candidate: %s", where, error)
            capacity_errors.append(str(error))
            continue
        register_secret(conn.password)
        if conn.transport == "ssh" and spec.provider != "fixed":
            _wait_for_ssh_or_delete(conn, provider, settings)
        logger.info("VM %s ready: %s@%s:%d (%s %s)", conn.name, conn.username, conn.host,
                    conn.ssh_port, conn.provider, conn.instance_id)
        return conn
    raise CapacityError(
        "cloud", f"no capacity for {specs[0].gpu_count} x {specs[0].gpu_name} on any of "
        f"{len(specs)} candidate(s): " + "; ".join(capacity_errors)
    )


def _wait_for_ssh_or_delete(conn: VMConnectionInfo, provider: VMProvider,
                            settings: CloudSettings) -> None:
    from deplodock_dagster.hosts import HostKeyError, vm_known_hosts_path
    from deplodock_dagster.hosts.wait import wait_for_ssh

    try:
        wait_for_ssh(
            conn.host, conn.ssh_port, conn.username, settings.private_key_path(),
            deadline_s=settings.ssh_deadline_s,
            per_try_timeout_s=settings.ssh_per_try_timeout_s,
            poll_interval_s=settings.ssh_poll_interval_s,
            known_hosts_path=vm_known_hosts_path(conn),
            host_key_policy="record",
        )
    except BaseException as error:
        what = f"VM {conn.name} ({conn.provider} {conn.instance_id})"
        try:
            provider.delete_instance(conn.delete_info)
        except Exception as delete_error:
            raise VMLeakError(
                conn.provider,
                f"{what} never accepted SSH ({error}) and could not be deleted "
                f"({delete_error}): delete it by hand with {_delete_hint(conn.delete_info)}",
            ) from error
        if isinstance(error, HostKeyError):
            raise  # a possible man-in-the-middle: never retried
        if isinstance(error, DeplodockError):
            raise HostError(
                f"{conn.username}@{conn.host}:{conn.ssh_port}",
                f"{what} never accepted SSH within {settings.ssh_deadline_s:g}s, so it was "
                f"deleted: {error}",
                transient=True,
            ) from error
        raise


def _delete_hint(delete_info: dict) -> str:
    provider = delete_info.get("provider")
    if provider == "gcp":
        return f"`deplodock vm delete gcp --name {delete_info.get('name')} " \
               f"--zone {delete_info.get('zone')}`"
    return f"`deplodock vm delete {provider} --instance-id {delete_info.get('instance_id')}`"


def delete_cloud_vm(delete_info: dict, *, settings: CloudSettings, dry_run: bool = False) -> bool:
    """Delete a VM (release a fixed host). True if deleted now, False if already gone.

    Safe to call twice. With `dry_run` the calls it would make are logged, nothing is sent.
    """
    provider_name = (delete_info or {}).get("provider")
    if not provider_name:
        raise ConfigError(f"delete_info names no provider: {delete_info!r}")
    if provider_name == "gcp" and not settings.gcp_project and delete_info.get("project"):
        settings = settings.replace(gcp_project=delete_info["project"])  # it says where
    provider = make_provider(provider_name, settings)
    if dry_run:
        for call in provider.plan_delete(delete_info):
            logger.info("dry run: would call\n%s", call.format())
        return False
    return provider.delete_instance(delete_info)


def list_managed_vms(settings: CloudSettings, run_id: str | None = None) -> list[VMSummary]:
    """Our VMs on every configured provider, only those of `run_id` when given."""
    labels = {RUN_LABEL: label_value(run_id)} if run_id else None
    found: list[VMSummary] = []
    for name in PROVIDERS:
        if settings.configured(name) is None:
            found.extend(make_provider(name, settings).list_instances(labels))
    return found
