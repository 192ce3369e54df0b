"""A fake Compute Engine v1 API on loopback, following ../shared/REFERENCE-cloud-apis.md.

It answers the real path shapes that google-api-python-client sends when its
`api_endpoint` is `http://127.0.0.1:PORT/compute/v1/`:

    POST   /compute/v1/projects/P/zones/Z/instances?requestId=R     insert -> Operation
    GET    /compute/v1/projects/P/zones/Z/instances[?filter=...]    list (items absent if none)
    GET    /compute/v1/projects/P/zones/Z/instances/N               get (404 body shape)
    DELETE /compute/v1/projects/P/zones/Z/instances/N               delete -> Operation
    GET    /compute/v1/projects/P/zones/Z/operations/O              zoneOperations.get
    POST   /compute/v1/projects/P/zones/Z/operations/O/wait         zoneOperations.wait
    GET    /compute/v1/projects/P/aggregated/instances[?filter=...] aggregatedList

Operations go PENDING -> RUNNING -> DONE and instances PROVISIONING -> STAGING -> RUNNING,
one step per call that reads them (no wall clock). A failed insert ends DONE with
`error.errors[].code`. Each VM is started by `vm_factory()` (a real sshd on a loopback
address of its own, port 22, in the tests) whose address is the VM's natIP; it is stopped
when the VM is deleted.
"""

from __future__ import annotations

import itertools
import re

from tests.fakes.base import FakeServer, json_answer

NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
MACHINE_TYPE_RE = re.compile(r"(^|/)zones/([^/]+)/machineTypes/([^/]+)$")
GPU_FAMILIES = ("a2-", "a3-", "a4-", "g2-", "g4-")
FILTER_RE = re.compile(r"labels\.([a-z0-9_-]+)\s*=\s*\"?([^\s\")]+)\"?")
PATH_RE = re.compile(
    r"^/compute/v1/projects/(?P<project>[^/]+)/"
    r"(?:zones/(?P<zone>[^/]+)/(?P<kind>instances|operations)(?:/(?P<name>[^/]+))?"
    r"(?P<wait>/wait)?|aggregated/(?P<agg>instances))$"
)
OPERATION_STEPS = ("PENDING", "RUNNING", "DONE")
INSTANCE_STEPS = ("PROVISIONING", "STAGING", "RUNNING")


def gce_error(status: int, reason: str, message: str) -> dict:
    return {"error": {"code": status, "message": message,
                      "errors": [{"reason": reason, "message": message, "domain": "global"}]}}


class FakeGce(FakeServer):
    """The fake API for one project. Fault hooks: `pool_exhausted`, `quota_exceeded`,
    `never_running`, plus the generic `fail_next` / `fail_fraction`."""

    def __init__(self, project: str, vm_factory=None):
        super().__init__()
        self.project = project
        self.vm_factory = vm_factory
        self.instances: dict[tuple[str, str], dict] = {}  # (zone, name) -> instance
        self.vms: dict[tuple[str, str], object] = {}
        self.operations: dict[str, dict] = {}
        self.requests: dict[str, str] = {}  # requestId -> operation name
        self.exhausted: set[str] = set()  # machine types (or "*") whose inserts stock out
        self.exhausted_with_details = False
        self.quota_mode: str | None = None  # "http" or "operation"
        self.never_running_flag = False
        self.inserted_bodies: list[dict] = []
        self._ids = itertools.count(1000)

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/compute/v1/"

    # Fault hooks.

    def pool_exhausted(self, machine_type: str = "*", with_details: bool = False) -> None:
        """Inserts of `machine_type` (any with "*") end in ZONE_RESOURCE_POOL_EXHAUSTED."""
        self.exhausted.add(machine_type)
        self.exhausted_with_details = with_details

    def quota_exceeded(self, mode: str = "http") -> None:
        """Inserts fail for quota: at once as HTTP 403 (`http`) or as an operation error."""
        self.quota_mode = mode

    def never_running(self) -> None:
        """New VMs stay STAGING forever."""
        self.never_running_flag = True

    def _encode(self, status, body):
        if not body:
            reason = {429: "rateLimitExceeded", 403: "rateLimitExceeded"}.get(
                status, "backendError"
            )
            body = gce_error(status, reason, f"fake injected HTTP {status}")
        return super()._encode(status, body)

    # State for assertions.

    def live_instances(self) -> list[dict]:
        with self.lock:
            return list(self.instances.values())

    # The API.

    def handle(self, method, path, query, body, headers):
        match = PATH_RE.match(path)
        if not match or match["project"] != self.project:
            return json_answer(404, gce_error(404, "notFound", f"The resource '{path}' "
                                              "was not found"))
        with self.lock:
            if match["agg"]:
                return self._aggregated(query) if method == "GET" else self._no_route(path)
            zone, kind, name = match["zone"], match["kind"], match["name"]
            if kind == "operations" and name:
                if match["wait"] and method == "POST" or method == "GET":
                    return self._operation(zone, name)
            elif kind == "instances" and not name and method == "POST":
                return self._insert(zone, query, body)
            elif kind == "instances" and not name and method == "GET":
                return self._list(zone, query)
            elif kind == "instances" and name and method == "GET":
                return self._get(zone, name)
            elif kind == "instances" and name and method == "DELETE":
                return self._delete(zone, name, query)
            return self._no_route(path)

    def _no_route(self, path):
        return json_answer(400, gce_error(400, "badRequest", f"no such method for {path}"))

    def _resource(self, zone: str, name: str) -> str:
        return f"projects/{self.project}/zones/{zone}/instances/{name}"

    def _not_found(self, zone, name):
        message = f"The resource '{self._resource(zone, name)}' was not found"
        return json_answer(404, gce_error(404, "notFound", message))

    def _new_operation(self, zone: str, kind: str, name: str, **extra) -> dict:
        op_name = f"operation-{next(self._ids)}-{kind}"
        operation = {
            "kind": "compute#operation",
            "id": str(next(self._ids)),
            "name": op_name,
            "zone": f"{self.endpoint}projects/{self.project}/zones/{zone}",
            "operationType": kind,
            "targetLink": f"{self.endpoint}{self._resource(zone, name)}",
            "status": "PENDING",
            "progress": 0,
            "_zone": zone,
            "_target": name,
            **extra,
        }
        self.operations[op_name] = operation
        return operation

    @staticmethod
    def _public(obj: dict) -> dict:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _invalid(self, message: str):
        return json_answer(400, gce_error(400, "invalid", message))

    def _validate_insert(self, zone: str, body) -> str | None:
        if not isinstance(body, dict):
            return "body must be a JSON instance"
        name = body.get("name", "")
        if not (1 <= len(name) <= 63 and NAME_RE.match(name)):
            return f"Invalid value for field 'resource.name': '{name}'"
        match = MACHINE_TYPE_RE.search(body.get("machineType", ""))
        if not match or match.group(2) != zone:
            return f"Invalid value for field 'resource.machineType': '{body.get('machineType')}'"
        labels = body.get("labels") or {}
        if len(labels) > 64:
            return "too many labels"
        for key, value in labels.items():
            if not LABEL_KEY_RE.match(key) or not LABEL_VALUE_RE.match(str(value)):
                return f"Invalid value for field 'resource.labels': '{key}={value}'"
        disks = body.get("disks") or []
        boot = [d for d in disks if d.get("boot")]
        if len(boot) != 1 or not (boot[0].get("initializeParams") or {}).get("sourceImage"):
            return "exactly one boot disk with initializeParams.sourceImage is required"
        interfaces = body.get("networkInterfaces") or []
        if not interfaces:
            return "at least one network interface is required"
        scheduling = body.get("scheduling") or {}
        model = scheduling.get("provisioningModel", "STANDARD")
        gpu = match.group(3).startswith(GPU_FAMILIES)
        if gpu and scheduling.get("onHostMaintenance") != "TERMINATE":
            return "Instances with GPUs must set scheduling.onHostMaintenance to TERMINATE"
        if model in ("SPOT", "FLEX_START") and scheduling.get("automaticRestart"):
            return f"{model} instances cannot set automaticRestart"
        if model == "FLEX_START":
            if "maxRunDuration" not in scheduling:
                return "FLEX_START requires scheduling.maxRunDuration"
            if scheduling.get("instanceTerminationAction") != "DELETE":
                return "FLEX_START requires instanceTerminationAction DELETE"
            wait = (body.get("params") or {}).get("requestValidForDuration") or scheduling.get(
                "requestValidForDuration"
            )
            if not wait:
                return "FLEX_START requires requestValidForDuration"
        for item in (body.get("metadata") or {}).get("items") or []:
            if item.get("key") == "ssh-keys":
                for line in str(item.get("value", "")).splitlines():
                    if ":" not in line:
                        return f"ssh-keys lines are USER:KEY, got {line[:40]!r}"
        return None

    def _insert(self, zone, query, body):
        request_id = query.get("requestId")
        if request_id and request_id in self.requests:
            return json_answer(200, self._public(self.operations[self.requests[request_id]]))
        problem = self._validate_insert(zone, body)
        if problem:
            return self._invalid(problem)
        if self.quota_mode == "http":
            message = "Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 1.0 globally."
            return json_answer(403, gce_error(403, "quotaExceeded", message))
        name = body["name"]
        if (zone, name) in self.instances:
            message = f"The resource '{self._resource(zone, name)}' already exists"
            return json_answer(409, gce_error(409, "alreadyExists", message))
        machine_type = MACHINE_TYPE_RE.search(body["machineType"]).group(3)
        outcome = None
        if self.quota_mode == "operation":
            outcome = ("QUOTA_EXCEEDED", "Quota 'NVIDIA_H100_GPUS' exceeded. Limit: 0.0 in "
                       f"region {zone.rsplit('-', 1)[0]}.")
        elif "*" in self.exhausted or machine_type in self.exhausted:
            code = "ZONE_RESOURCE_POOL_EXHAUSTED" + (
                "_WITH_DETAILS" if self.exhausted_with_details else ""
            )
            outcome = (code, f"The zone '{zone}' does not have enough resources available "
                       f"to fulfill the request. '(resource type:compute)'.")
        self.inserted_bodies.append(body)
        instance = {
            "kind": "compute#instance",
            "id": str(next(self._ids)),
            "name": name,
            "zone": f"{self.endpoint}projects/{self.project}/zones/{zone}",
            "machineType": body["machineType"],
            "status": "PROVISIONING",
            "labels": dict(body.get("labels") or {}),
            "scheduling": body.get("scheduling") or {},
            "networkInterfaces": [{"network": "global/networks/default",
                                   "networkIP": "10.128.0.2",
                                   "accessConfigs": [{"type": "ONE_TO_ONE_NAT",
                                                      "name": "External NAT"}]}],
            "_steps": 0,
        }
        operation = self._new_operation(zone, "insert", name, _outcome=outcome)
        if request_id:
            self.requests[request_id] = operation["name"]
        if outcome is None:
            self.instances[(zone, name)] = instance
            if self.vm_factory is not None:
                self.vms[(zone, name)] = self.vm_factory()
        return json_answer(200, self._public(operation))

    def _operation(self, zone, name):
        operation = self.operations.get(name)
        if operation is None or operation["_zone"] != zone:
            return json_answer(404, gce_error(404, "notFound", f"operation {name} not found"))
        step = OPERATION_STEPS.index(operation["status"])
        if step < len(OPERATION_STEPS) - 1:
            operation["status"] = OPERATION_STEPS[step + 1]
            operation["progress"] = 50 * (step + 1)
            if operation["status"] == "DONE":
                self._finish(operation)
        return json_answer(200, self._public(operation))

    def _finish(self, operation: dict) -> None:
        key = (operation["_zone"], operation["_target"])
        if operation["operationType"] == "insert" and operation.get("_outcome"):
            code, message = operation["_outcome"]
            operation["error"] = {"errors": [{"code": code, "message": message}]}
            operation["httpErrorStatusCode"] = 503 if "POOL" in code else 403
        elif operation["operationType"] == "delete":
            self.instances.pop(key, None)

    def _advance_instance(self, instance: dict) -> None:
        if instance["status"] not in INSTANCE_STEPS:
            return
        instance["_steps"] += 1
        step = min(instance["_steps"], len(INSTANCE_STEPS) - 1)
        if self.never_running_flag:
            step = min(step, 1)
        instance["status"] = INSTANCE_STEPS[step]
        vm = self.vms.get((instance["zone"].rsplit("/", 1)[-1], instance["name"]))
        if instance["status"] == "RUNNING":
            address = vm.address if vm is not None else "127.0.0.1"
            instance["networkInterfaces"][0]["accessConfigs"][0]["natIP"] = address

    def _get(self, zone, name):
        instance = self.instances.get((zone, name))
        if instance is None:
            return self._not_found(zone, name)
        self._advance_instance(instance)
        return json_answer(200, self._public(instance))

    def _delete(self, zone, name, query):
        instance = self.instances.get((zone, name))
        if instance is None:
            return self._not_found(zone, name)
        if instance["status"] != "STOPPING":
            instance["status"] = "STOPPING"
            vm = self.vms.pop((zone, name), None)
            if vm is not None:
                vm.stop()
        operation = self._new_operation(zone, "delete", name)
        return json_answer(200, self._public(operation))

    def _matching(self, instances, query) -> list[dict]:
        wanted = dict(FILTER_RE.findall(query.get("filter", "")))
        return [
            self._public(i) for i in instances
            if all(i["labels"].get(key) == value for key, value in wanted.items())
        ]

    def _list(self, zone, query):
        items = self._matching([i for (z, _), i in self.instances.items() if z == zone], query)
        answer = {"kind": "compute#instanceList", "id": f"projects/{self.project}/zones/{zone}"}
        if items:
            answer["items"] = items
        return json_answer(200, answer)

    def _aggregated(self, query):
        scopes: dict[str, dict] = {}
        for (zone, _), instance in self.instances.items():
            for item in self._matching([instance], query):
                scopes.setdefault(f"zones/{zone}", {"instances": []})["instances"].append(item)
        answer = {"kind": "compute#instanceAggregatedList", "id": f"projects/{self.project}"}
        if scopes:
            answer["items"] = scopes
        return json_answer(200, answer)
