"""Fixed hosts: servers you already own, used instead of a cloud and never deleted.

Hosts come from a YAML file (`DEPLODOCK_FIXED_HOSTS=hosts.yaml`):

    hosts:
      - name: lab-h100            # unique; defaults to the address
        address: 10.0.0.5
        port: 22                  # default 22
        user: ubuntu              # default root
        gpu: NVIDIA H100 80GB     # full or short name (hardware.py)
        gpu_count: 8
      - name: this-machine
        transport: local          # run on this machine, no SSH
        gpu: cpu
        gpu_count: 1

"Creating" a VM takes a free host whose GPU matches and holds at least the GPUs asked for,
and marks it in use with a lock file (created atomically, so two groups never share one
host, across processes). "Deleting" releases the lock and never touches the machine.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from deplodock_dagster.errors import CapacityError, ConfigError
from deplodock_dagster.vm.api_calls import ApiCall
from deplodock_dagster.vm.types import VMConnectionInfo, VMProvider, VMSpec, VMSummary

logger = logging.getLogger(__name__)

PROVIDER = "fixed"
TRANSPORTS = ("ssh", "local")
DEFAULT_LOCK_DIR = Path.home() / ".cache" / "deplodock" / "fixed-hosts"


@dataclass(frozen=True)
class FixedHost:
    """One server: where it is, how to log in, and which GPUs it has."""

    name: str
    address: str
    gpu_name: str  # full name, resolved through hardware.py
    gpu_count: int
    port: int = 22
    user: str = "root"
    transport: str = "ssh"


def load_fixed_hosts(path: str | os.PathLike) -> list[FixedHost]:
    """Read and check a hosts file; errors name the file, the entry and the field."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the fixed hosts file: {error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    entries = data.get("hosts") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a list under `hosts:`")
    return parse_fixed_hosts(entries, str(path))


def parse_fixed_hosts(entries: list, source: str = "fixed hosts") -> list[FixedHost]:
    """Check host entries (mappings as in the hosts file); errors name `source` and field."""
    from deplodock_dagster.hardware import resolve_gpu_name

    hosts: list[FixedHost] = []
    for index, entry in enumerate(entries):
        where = f"{source}: hosts[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with address, gpu, gpu_count")
        transport = entry.get("transport", "ssh")
        if transport not in TRANSPORTS:
            raise ConfigError(f"{where}.transport: {transport!r} is not one of ssh, local")
        address = entry.get("address") or ("localhost" if transport == "local" else None)
        if not isinstance(address, str) or not address:
            raise ConfigError(f"{where}.address: required (a host name or IP address)")
        try:
            gpu_name = resolve_gpu_name(str(entry.get("gpu", "")))
        except ConfigError as error:
            raise ConfigError(f"{where}.gpu: {error}") from error
        count, port = entry.get("gpu_count", 1), entry.get("port", 22)
        for field_name, value in (("gpu_count", count), ("port", port)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}.{field_name}: expected a positive integer")
        user = entry.get("user", "root")
        if not isinstance(user, str) or not user:
            raise ConfigError(f"{where}.user: expected a user name")
        name = str(entry.get("name") or address)
        if any(h.name == name for h in hosts):
            raise ConfigError(f"{where}.name: {name!r} is used twice")
        hosts.append(FixedHost(name, address, gpu_name, count, port, user, transport))
    return hosts


class FixedHostsProvider(VMProvider):
    """Lend fixed hosts to groups, one group per host at a time."""

    name = PROVIDER

    def __init__(self, hosts: list[FixedHost], lock_dir: str | os.PathLike = DEFAULT_LOCK_DIR):
        self.hosts = list(hosts)
        self.lock_dir = Path(lock_dir)

    def _lock_path(self, host: FixedHost) -> Path:
        return self.lock_dir / f"{host.name}.lock"

    def matching(self, gpu_name: str, gpu_count: int) -> list[FixedHost]:
        """Hosts with this GPU and enough of them, fewest GPUs first."""
        found = [h for h in self.hosts if h.gpu_name == gpu_name and h.gpu_count >= gpu_count]
        return sorted(found, key=lambda h: h.gpu_count)

    def create_instance(self, spec: VMSpec) -> VMConnectionInfo:
        """Take a free matching host; CapacityError if none is free or none matches."""
        candidates = self.matching(spec.gpu_name, spec.gpu_count)
        if not candidates:
            raise CapacityError(
                PROVIDER, f"no fixed host has {spec.gpu_count} x {spec.gpu_name}"
            )
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        for host in candidates:
            if self._try_lock(host, spec):
                logger.info("fixed host %s (%s) lent to %s", host.name, host.address, spec.name)
                return VMConnectionInfo(
                    provider=PROVIDER,
                    instance_id=host.name,
                    name=spec.name,
                    host=host.address,
                    ssh_port=host.port,
                    username=host.user,
                    delete_info={"provider": PROVIDER, "instance_id": host.name,
                                 "name": spec.name},
                    transport=host.transport,
                )
        busy = ", ".join(f"{h.name} (used by {self._holder(h)})" for h in candidates)
        raise CapacityError(PROVIDER, f"every fixed host with {spec.gpu_name} is in use: {busy}")

    def _try_lock(self, host: FixedHost, spec: VMSpec) -> bool:
        record = {"name": spec.name, "labels": dict(spec.labels), "host": host.name,
                  "pid": os.getpid(), "since": time.time()}
        try:
            fd = os.open(self._lock_path(host), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
        return True

    def _read_lock(self, path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"name": "?", "labels": {}}  # half-written: still counts as held

    def _holder(self, host: FixedHost) -> str:
        record = self._read_lock(self._lock_path(host)) or {}
        return str(record.get("name", "?"))

    def delete_instance(self, delete_info: dict) -> bool:
        """Release the host (never touch the machine). False if it was not held by this VM."""
        host_name = delete_info.get("instance_id")
        path = self.lock_dir / f"{host_name}.lock"
        record = self._read_lock(path)
        if record is None:
            return False
        wanted = delete_info.get("name")
        if wanted and record.get("name") not in (wanted, "?"):
            logger.info("fixed host %s is held by %s, not %s: left alone", host_name,
                        record.get("name"), wanted)
            return False
        path.unlink(missing_ok=True)
        logger.info("fixed host %s released", host_name)
        return True

    def plan_delete(self, delete_info: dict) -> list[ApiCall]:
        path = self.lock_dir / f"{delete_info.get('instance_id')}.lock"
        return [ApiCall("UNLINK", str(path), note="release the fixed host; the machine stays")]

    def list_instances(self, labels: dict[str, str] | None = None) -> list[VMSummary]:
        """Hosts in use, as VMs, filtered by labels."""
        found = []
        for host in self.hosts:
            record = self._read_lock(self._lock_path(host))
            if record is None:
                continue
            host_labels = dict(record.get("labels") or {})
            if any(host_labels.get(k) != v for k, v in (labels or {}).items()):
                continue
            found.append(VMSummary(
                provider=PROVIDER, instance_id=host.name, name=str(record.get("name")),
                status="in-use", labels=host_labels,
                delete_info={"provider": PROVIDER, "instance_id": host.name,
                             "name": record.get("name")},
            ))
        return found
