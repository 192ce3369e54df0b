"""Types shared by every VM provider: what to create, how to reach it, how to delete it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

# Label keys every VM we create carries, so reconciliation can find it without memory.
RUN_LABEL = "deplodock-run"
GROUP_LABEL = "deplodock-group"
MANAGED_LABEL = "deplodock-managed"


@dataclass(frozen=True)
class VMSpec:
    """A VM to create."""

    provider: str  # "cloudrift", "gcp", "fixed"
    instance_type: str  # provider's type, e.g. "h200-8-generic.8" or "a3-highgpu-8g"
    gpu_name: str
    gpu_count: int
    name: str  # VM name, lowercase [a-z0-9-], carries run id and group label
    ssh_public_key: str  # OpenSSH public key line
    ssh_user: str = "riftuser"
    labels: dict[str, str] = field(default_factory=dict)  # run id, group label
    ports: tuple[int, ...] = (22, 8000)  # ports the deploy needs open
    zone: str | None = None  # GCP zone; None for providers without zones
    max_run_duration_s: int | None = None  # a last net where the provider supports it


@dataclass(frozen=True)
class VMConnectionInfo:
    """How to reach a created VM over SSH, and what `delete_instance` needs to delete it.

    `delete_info` is plain JSON (provider, instance id, zone, project) so it can travel
    between Dagster ops and be stored; it never holds a secret. `password` is secret and
    excluded from repr.
    """

    provider: str
    instance_id: str
    name: str
    host: str
    ssh_port: int
    username: str
    delete_info: dict
    port_mappings: tuple[tuple[int, int], ...] = ()  # (VM port, public port)
    transport: str = "ssh"  # "ssh", or "local" for a fixed host that is this machine
    password: str | None = field(default=None, repr=False, compare=False)

    def public_port(self, vm_port: int) -> int:
        """The public port that reaches `vm_port` on the VM (the same if not mapped)."""
        for inner, outer in self.port_mappings:
            if inner == vm_port:
                return outer
        return vm_port

    def to_dict(self) -> dict:
        """JSON-ready form without the password."""
        return {
            "provider": self.provider,
            "instance_id": self.instance_id,
            "name": self.name,
            "host": self.host,
            "ssh_port": self.ssh_port,
            "username": self.username,
            "delete_info": dict(self.delete_info),
            "port_mappings": [list(pair) for pair in self.port_mappings],
            "transport": self.transport,
        }

    @classmethod
    def from_dict(cls, data: dict) -> VMConnectionInfo:
        return cls(
            provider=data["provider"],
            instance_id=data["instance_id"],
            name=data["name"],
            host=data["host"],
            ssh_port=int(data["ssh_port"]),
            username=data["username"],
            delete_info=dict(data["delete_info"]),
            port_mappings=tuple(tuple(pair) for pair in data.get("port_mappings", ())),
            transport=data.get("transport", "ssh"),
        )


@dataclass(frozen=True)
class VMSummary:
    """One of our VMs as a listing shows it (for reconciliation)."""

    provider: str
    instance_id: str
    name: str
    status: str
    labels: dict[str, str]
    delete_info: dict


class VMProvider(ABC):
    """A cloud (or a pool of fixed hosts) that creates and deletes VMs.

    Errors are classed: CapacityError (try elsewhere or later), TransientCloudError (retry),
    TerminalCloudError (stop). On a failure after create, `create_instance` deletes what it
    made before raising.
    """

    name: str = "provider"

    @abstractmethod
    def create_instance(self, spec: VMSpec) -> VMConnectionInfo:
        """Create a VM and wait until it is ready for SSH at the network level."""

    @abstractmethod
    def delete_instance(self, delete_info: dict) -> bool:
        """Delete a VM. True if it was deleted now, False if it was already gone."""

    @abstractmethod
    def list_instances(self, labels: dict[str, str] | None = None) -> list[VMSummary]:
        """Our VMs (those carrying MANAGED_LABEL), optionally filtered by labels."""
