"""A fake CloudRift API on loopback, following ../shared/REFERENCE-cloud-apis.md.

What it gets right because clients trip on it: the `{"version", "data"}` envelope both
ways; 200 for most calls and 201 for `ssh-keys/add`; plain-text error bodies; a freshly
rented id that is absent from the first listing; `Initializing` -> `Active` with the
connection details arriving a few polls after Active; `virtual_machines[0].ready`; host
address and port mappings null without `with_connection_info`; unknown ids simply absent;
terminate -> `Deactivating` -> `Inactive`.

Each rented VM is started by `vm_factory(ports)` (in the tests, a real sshd on a loopback
address of its own) and stopped when terminated. The lifecycle moves one step per listing
that sees the instance, so tests never depend on wall-clock time.
"""

from __future__ import annotations

import itertools
import re
import secrets
import uuid
from dataclasses import dataclass

from tests.fakes.base import FakeServer, json_answer, text_answer

VERSION_RE = re.compile(r"^(~upcoming|\d{4}-\d{2}-\d{2})$")
DEFAULT_NODES = 3

# Polls (listings that see the instance) spent in each phase before the next.
HIDDEN_POLLS = 1  # a fresh id is not listed at first
INITIALIZING_POLLS = 1
ACTIVE_BARE_POLLS = 2  # Active, but no host address / port mappings yet
NOT_READY_POLLS = 1  # connection details present, VM not ready yet


class NullVM:
    """A VM without a server behind it (for API-only tests)."""

    address = "127.0.0.1"
    port = 22
    username = "riftuser"

    def stop(self) -> None:
        pass


@dataclass
class FakeInstance:
    id: str
    instance_type: str
    name: str | None
    cluster_name: str | None
    ports: list[int]
    vm: object
    password: str
    seen: int = 0
    status: str = "Initializing"
    never_ready: bool = False
    failure_cause: str | None = None
    login_form: str = "UsernameAndPassword"
    created_at: str = "2026-01-01T00:00:00Z"
    terminated: bool = False

    def advance(self) -> None:
        self.seen += 1
        if self.terminated:
            if self.status == "Deactivating" and self.seen > 1:
                self.status = "Inactive"
            return
        if self.seen - HIDDEN_POLLS > INITIALIZING_POLLS:
            self.status = "Failed" if self.failure_cause else "Active"

    @property
    def listed(self) -> bool:
        return self.seen > HIDDEN_POLLS or self.terminated

    def phase(self) -> str:
        """bare | connected | ready, for an Active instance."""
        active_for = self.seen - HIDDEN_POLLS - INITIALIZING_POLLS
        if self.never_ready or active_for <= ACTIVE_BARE_POLLS:
            return "bare"
        if active_for <= ACTIVE_BARE_POLLS + NOT_READY_POLLS:
            return "connected"
        return "ready"

    def login_info(self):
        user = self.vm.username
        if self.login_form == "UsernameAndPassword":
            return {"UsernameAndPassword": {"username": user, "password": self.password}}
        if self.login_form == "Username":
            return {"Username": user}
        return {"HiddenPassword": {"username": user}}

    def to_json(self, with_connection_info: bool) -> dict:
        phase = self.phase() if self.status == "Active" else "bare"
        connected = with_connection_info and phase in ("connected", "ready")
        mappings = [[22, self.vm.port]] + [[p, p] for p in self.ports if p != 22]
        return {
            "id": self.id,
            "name": self.name,
            "cluster_name": self.cluster_name,
            "status": self.status,
            "node_id": "fake-node-1",
            "node_mode": "VirtualMachine",
            "node_status": "Ready",
            "host_address": self.vm.address if connected else None,
            "resource_info": {"instance_type": self.instance_type, "cost_per_hour": 38.75},
            "virtual_machines": [
                {
                    "vmid": 12,
                    "ready": phase == "ready" and self.status == "Active",
                    "state": "Running" if phase == "ready" else "Starting",
                    "login_info": self.login_info(),
                }
            ],
            "port_mappings": mappings if connected else None,
            "created_at": self.created_at,
            "failure": (
                {"cause": self.failure_cause, "user_message": f"{self.failure_cause} (fake)"}
                if self.status == "Failed" else None
            ),
        }


class FakeCloudRift(FakeServer):
    """The fake API. `instance_types` maps a type name to {variant name: free nodes}."""

    def __init__(self, api_key: str, instance_types: dict[str, dict[str, int]],
                 vm_factory=None, login_form: str = "UsernameAndPassword"):
        super().__init__()
        self.api_key = api_key
        self.instance_types = instance_types
        self.vm_factory = vm_factory or (lambda ports: NullVM())
        self.login_form = login_form
        self.instances: dict[str, FakeInstance] = {}
        self.ssh_keys: list[dict] = []
        self.rent_503_types: set[str] = set()  # answer rent with 503 "No node available"
        self.empty_rent_types: set[str] = set()  # answer rent with an empty id list
        self.never_ready_types: set[str] = set()
        self.fail_types: dict[str, str] = {}  # variant -> failure cause
        self._ids = itertools.count(1)

    # Fault hooks beyond the generic ones.

    def no_capacity(self, variant: str, mode: str = "zero_nodes") -> None:
        """Make `variant` unavailable: `zero_nodes` in the catalog, `rent_503` (the catalog
        still shows nodes but the rent answers 503 "No node available"), or `empty_ids`."""
        if mode == "zero_nodes":
            self._set_nodes(variant, 0)
        elif mode == "rent_503":
            self.rent_503_types.add(variant)
        elif mode == "empty_ids":
            self.empty_rent_types.add(variant)
        else:
            raise ValueError(mode)

    def never_ready(self, variant: str) -> None:
        self.never_ready_types.add(variant)

    def fail_rentals(self, variant: str, cause: str = "VmBootFailed") -> None:
        self.fail_types[variant] = cause

    def _encode(self, status, body):
        if not body:
            body = {401: "Unauthorized", 429: "Too Many Requests"}.get(
                status, "Service Unavailable"
            )
        return super()._encode(status, body)

    def _set_nodes(self, variant: str, nodes: int) -> None:
        for variants in self.instance_types.values():
            if variant in variants:
                variants[variant] = nodes
                return
        raise KeyError(variant)

    # State for assertions.

    def live_instances(self) -> list[FakeInstance]:
        """Instances not terminated (what would still be billing)."""
        with self.lock:
            return [i for i in self.instances.values() if not i.terminated]

    # The API.

    def handle(self, method, path, query, body, headers):
        if headers.get("X-API-Key") != self.api_key:
            return text_answer(401, "Unauthorized")
        prefix = "/api/v1/"
        if method != "POST" or not path.startswith(prefix):
            return text_answer(404, f"No route for {method} {path}")
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            return text_answer(400, "Expected a JSON body with version and data")
        version = body.get("version")
        if not isinstance(version, str) or not VERSION_RE.match(version):
            return text_answer(400, "unsupported version")
        route = {
            "instance-types/list": self._instance_types,
            "instances/rent": self._rent,
            "instances/list": self._list,
            "instances/terminate": self._terminate,
            "ssh-keys/list": self._ssh_keys_list,
            "ssh-keys/add": self._ssh_keys_add,
        }.get(path[len(prefix):])
        if route is None:
            return text_answer(404, f"No route for {path}")
        with self.lock:
            result = route(body["data"])
        if isinstance(result, tuple):
            return result
        status = 201 if path.endswith("ssh-keys/add") else 200
        return json_answer(status, {"version": version, "data": result})

    def _instance_types(self, data):
        return {
            "instance_types": [
                {
                    "name": name,
                    "brand_short": name.split("-")[0],
                    "cost_per_hour": 39,
                    "variants": [
                        {
                            "name": variant,
                            "gpu_count": int(variant.rsplit(".", 1)[1]),
                            "cost_per_hour": 38.75,
                            "available_nodes": nodes,
                            "available_nodes_per_dc": {"dc-1": nodes},
                        }
                        for variant, nodes in variants.items()
                    ],
                }
                for name, variants in self.instance_types.items()
            ]
        }

    def _variant_nodes(self, variant: str) -> int | None:
        for variants in self.instance_types.values():
            if variant in variants:
                return variants[variant]
        return None

    def _rent(self, data):
        try:
            variant = data["selector"]["ByInstanceTypeAndLocation"]["instance_type"]
            vm_config = data["config"]["VirtualMachine"]
            keys = vm_config["ssh_key"]
        except (KeyError, TypeError):
            return text_answer(400, "Invalid rent request")
        if not any(keys.get(form) for form in ("PublicKeys", "ByName", "ById")):
            return text_answer(400, "ssh_key must name at least one key")
        nodes = self._variant_nodes(variant)
        if nodes is None:
            return text_answer(400, f"Instance type {variant} not found")
        if variant in self.empty_rent_types:
            return {"instance_ids": []}
        if nodes <= 0 or variant in self.rent_503_types:
            return text_answer(503, f"No node available for instance type {variant}")
        ports = sorted({int(p) for p in data.get("ports") or ["22"]} | {22})
        vm = self.vm_factory(ports)
        instance = FakeInstance(
            id=str(uuid.uuid1()),
            instance_type=variant,
            name=data.get("name"),
            cluster_name=data.get("cluster_name"),
            ports=ports,
            vm=vm,
            password=f"pw-{secrets.token_hex(8)}",
            never_ready=variant in self.never_ready_types,
            failure_cause=self.fail_types.get(variant),
            login_form=self.login_form,
        )
        self.instances[instance.id] = instance
        self._set_nodes(variant, nodes - 1)
        return {"instance_ids": [instance.id]}

    def _select(self, selector) -> list[FakeInstance]:
        if selector == "All":
            return list(self.instances.values())
        if not isinstance(selector, dict) or len(selector) != 1:
            raise ValueError(f"bad selector {selector!r}")
        (kind, values), = selector.items()
        values = list(values or [])
        if kind == "ById":
            return [self.instances[i] for i in values if i in self.instances]
        if kind == "ByClusterName":
            return [i for i in self.instances.values() if i.cluster_name in values]
        if kind == "ByStatus":
            return list(self.instances.values())  # filtered by status after advancing
        raise ValueError(f"unknown selector {kind}")

    def _list(self, data):
        try:
            chosen = self._select(data.get("selector", "All"))
        except ValueError as error:
            return text_answer(400, str(error))
        with_info = bool((data.get("mask") or {}).get("with_connection_info"))
        shown = []
        for instance in chosen:
            instance.advance()
            if instance.listed:
                shown.append(instance.to_json(with_info))
        selector = data.get("selector")
        if isinstance(selector, dict) and "ByStatus" in selector:
            shown = [i for i in shown if i["status"] in selector["ByStatus"]]
        return {"instances": shown}

    def _terminate(self, data):
        try:
            ids = data["selector"]["ById"]
        except (KeyError, TypeError):
            return text_answer(400, "terminate needs selector.ById")
        terminated = []
        for instance_id in ids:
            instance = self.instances.get(instance_id)
            if instance is None or instance.terminated:
                continue
            instance.terminated = True
            instance.status = "Inactive" if instance.status == "Failed" else "Deactivating"
            instance.seen = 0
            instance.vm.stop()
            for variants in self.instance_types.values():
                if instance.instance_type in variants:
                    variants[instance.instance_type] += 1
            terminated.append({"id": instance.id, "status": instance.status})
        return {"terminated": terminated}

    def _ssh_keys_list(self, data):
        return {"keys": list(self.ssh_keys)}

    def _ssh_keys_add(self, data):
        if not data.get("name") or not data.get("public_key"):
            return text_answer(400, "name and public_key are required")
        key = {"id": f"key-{next(self._ids)}", "name": data["name"],
               "public_key": data["public_key"]}
        self.ssh_keys.append(key)
        return {"public_key": key}


def default_catalog(bases: list[str], nodes: int = DEFAULT_NODES) -> dict[str, dict[str, int]]:
    """A catalog offering `<base>.1/.2/.4/.8` with `nodes` free nodes each."""
    return {base: {f"{base}.{n}": nodes for n in (1, 2, 4, 8)} for base in bases}
