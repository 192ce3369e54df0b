"""CloudRift provider: rent GPU VMs through CloudRift's REST API (requests).

Every call is `POST <api>/api/v1/<path>` with the `X-API-Key` header and the versioned
envelope `{"version", "data"}` (see ../shared/REFERENCE-cloud-apis.md). A rental is found
again by its cluster name (`deplodock-<run id>`) and its name (which also carries the group
label), never only from memory, so a retried rent never rents twice and a reconciler can
find what a dead run left behind.

Errors are classed: 401/403 terminal (bad key), 429/5xx/network transient (retried a
bounded number of times where a retry is safe), "no node available", an empty rental and a
type with no free nodes capacity.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

import requests

from deplodock_dagster.errors import (
    CapacityError,
    CloudError,
    TerminalCloudError,
    TransientCloudError,
    VMLeakError,
)
from deplodock_dagster.secrets import redact, register_secret
from deplodock_dagster.vm.api_calls import ApiCall
from deplodock_dagster.vm.naming import NAME_PREFIX
from deplodock_dagster.vm.retry import RetryPolicy, call_with_retries
from deplodock_dagster.vm.types import (
    MANAGED_LABEL,
    RUN_LABEL,
    VMConnectionInfo,
    VMProvider,
    VMSpec,
    VMSummary,
)

logger = logging.getLogger(__name__)

PROVIDER = "cloudrift"
DEFAULT_API_URL = "https://api.cloudrift.ai"
DEFAULT_API_VERSION = "~upcoming"
DEFAULT_IMAGE_URL = (
    "https://storage.googleapis.com/cloudrift-vm-disks/disks/github/"
    "ubuntu-noble-server-gpu-580-129-20251015-183936.img"
)
DEFAULT_CLOUDINIT_URL = (
    "https://storage.googleapis.com/cloudrift-vm-disks/cloudinit/ubuntu-base.cloudinit"
)
DEFAULT_USER = "riftuser"
DEFAULT_POLL_INTERVAL_S = 10.0
DEFAULT_READY_DEADLINE_S = 900.0
DEFAULT_REQUEST_TIMEOUT_S = 30.0

ACTIVE = "Active"
FAILED = "Failed"
GONE_STATUSES = ("Deactivating", "Inactive")
LIVE_STATUSES = ("Initializing", ACTIVE, FAILED)  # still to be terminated
# Failure causes that say "this node or type is unwell now", worth trying elsewhere.
CAPACITY_FAILURE_CAUSES = ("VmBootFailed", "PlatformError", "NodeUnavailable", "NoCapacity")
_NO_NODE_RE = re.compile(r"no (free |available )?nodes?\b|not enough (capacity|nodes)", re.I)
_KEY_HINT = "check CLOUDRIFT_API_KEY"


@dataclass(frozen=True)
class CloudRiftConfig:
    """Where the API is, how to talk to it, and how patiently to wait for a VM."""

    api_key: str = field(repr=False)
    api_url: str = DEFAULT_API_URL
    api_version: str = DEFAULT_API_VERSION
    image_url: str = DEFAULT_IMAGE_URL
    cloudinit_url: str = DEFAULT_CLOUDINIT_URL
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    ready_deadline_s: float = DEFAULT_READY_DEADLINE_S
    retry: RetryPolicy = RetryPolicy()
    # A fresh rental may be missing from the first listings: look this many times (one poll
    # interval apart) before concluding that a failed rent did not go through.
    rent_recheck_polls: int = 3


def cluster_name(run_label: str) -> str:
    """The CloudRift cluster name that groups every VM of one run."""
    return f"{NAME_PREFIX}-{run_label}"


def delete_command(instance_id: str) -> str:
    """The CLI command that deletes a CloudRift instance by hand."""
    return f"deplodock vm delete cloudrift --instance-id {instance_id}"


class CloudRiftClient:
    """The CloudRift REST API: one requests Session, a timeout on every call."""

    def __init__(self, config: CloudRiftConfig, session: requests.Session | None = None):
        if not config.api_key:
            raise TerminalCloudError(PROVIDER, f"no API key: {_KEY_HINT}")
        register_secret(config.api_key)
        self.config = config
        self.session = session or requests.Session()
        self.session.headers.update(
            {"X-API-Key": config.api_key, "Content-Type": "application/json"}
        )

    def url(self, path: str) -> str:
        return f"{self.config.api_url.rstrip('/')}/api/v1/{path}"

    def envelope(self, data: dict) -> dict:
        return {"version": self.config.api_version, "data": data}

    def describe(self, path: str, data: dict, note: str = "") -> ApiCall:
        """The request `call(path, data)` would send, for dry runs."""
        headers = {"X-API-Key": self.config.api_key, "Content-Type": "application/json"}
        return ApiCall("POST", self.url(path), self.envelope(data), headers, note)

    def call(self, path: str, data: dict, *, retry: bool = False) -> dict:
        """POST one call and return the response's `data`; `retry` only for safe calls."""
        if not retry:
            return self._call_once(path, data)
        return call_with_retries(
            lambda: self._call_once(path, data), self.config.retry, f"CloudRift {path}"
        )

    def _call_once(self, path: str, data: dict) -> dict:
        logger.debug("CloudRift POST %s %s", path, redact(str(data)))
        try:
            response = self.session.post(
                self.url(path), json=self.envelope(data), timeout=self.config.request_timeout_s
            )
        except requests.RequestException as error:
            raise TransientCloudError(
                PROVIDER, f"{path}: cannot reach {self.config.api_url}: {error}"
            ) from error
        if not 200 <= response.status_code < 300:
            raise classify_http_error(path, response.status_code, response.text)
        try:
            body = response.json()
        except ValueError as error:
            raise TransientCloudError(
                PROVIDER, f"{path}: answer is not JSON: {response.text[:200]!r}"
            ) from error
        payload = body.get("data", body) if isinstance(body, dict) else None
        if not isinstance(payload, dict):
            raise TerminalCloudError(PROVIDER, f"{path}: unexpected answer {body!r:.200}")
        return payload

    # The API's verbs.

    def instance_types(self) -> list[dict]:
        return self.call("instance-types/list", {"selector": "All"}, retry=True).get(
            "instance_types"
        ) or []

    def list_instances(self, selector: dict, with_connection_info: bool = True) -> list[dict]:
        data = {"selector": selector, "mask": {"with_connection_info": with_connection_info}}
        return self.call("instances/list", data, retry=True).get("instances") or []

    def terminate(self, instance_ids: list[str]) -> list[dict]:
        data = {"selector": {"ById": list(instance_ids)}}
        return self.call("instances/terminate", data).get("terminated") or []

    def list_ssh_keys(self) -> list[dict]:
        return self.call("ssh-keys/list", {}, retry=True).get("keys") or []

    def add_ssh_key(self, name: str, public_key: str) -> dict:
        """Register a key; returns the key object (answer read in both known forms)."""
        data = self.call("ssh-keys/add", {"name": name, "public_key": public_key})
        for form in ("public_key", "ssh_key"):
            if isinstance(data.get(form), dict):
                return data[form]
        raise TerminalCloudError(PROVIDER, f"ssh-keys/add: unexpected answer {data!r:.200}")


def classify_http_error(path: str, status: int, body: str) -> CloudError:
    """The error class for a non-2xx CloudRift answer (bodies are plain text)."""
    text = redact((body or "").strip())[:300] or "(empty body)"
    if status in (401, 403):
        return TerminalCloudError(
            PROVIDER, f"{path}: the API key was refused (HTTP {status}: {text}); {_KEY_HINT}"
        )
    if status == 503 and _NO_NODE_RE.search(text):
        return CapacityError(PROVIDER, f"{path}: no node available (HTTP 503: {text})")
    if status == 429 or status >= 500:
        return TransientCloudError(PROVIDER, f"{path}: HTTP {status}: {text}")
    return TerminalCloudError(PROVIDER, f"{path}: HTTP {status}: {text}")


def is_ready(instance: dict) -> bool:
    """Active, with a host address, port mappings (maybe empty) and a VM that says ready."""
    return not missing_for_ready(instance)


def missing_for_ready(instance: dict) -> list[str]:
    """What an instance still lacks before it is usable (empty when ready)."""
    missing = []
    if instance.get("status") != ACTIVE:
        missing.append(f"status {ACTIVE} (is {instance.get('status')})")
    if not instance.get("host_address"):
        missing.append("host_address")
    if instance.get("port_mappings") is None:
        missing.append("port_mappings")
    vms = instance.get("virtual_machines") or []
    if not vms or vms[0].get("ready") is not True:
        missing.append("virtual_machines[0].ready")
    return missing


def read_login(login_info) -> tuple[str, str | None]:
    """(username, password) from `login_info` in any of its forms; riftuser by default."""
    if not isinstance(login_info, dict):
        return DEFAULT_USER, None  # a bare variant name such as "HiddenPassword", or null
    for form in ("UsernameAndPassword", "Username", "HiddenPassword"):
        if form not in login_info:
            continue
        value = login_info[form]
        if isinstance(value, str) and form == "Username":
            return value or DEFAULT_USER, None
        if isinstance(value, dict):
            username = value.get("username")
            password = value.get("password") if form == "UsernameAndPassword" else None
            return (username if isinstance(username, str) and username else DEFAULT_USER,
                    password if isinstance(password, str) and password else None)
        return DEFAULT_USER, None
    return DEFAULT_USER, None


def ssh_port_of(port_mappings) -> int:
    """The public port of VM port 22 from `[[22, ext], ...]`, else 22."""
    for pair in port_mappings or ():
        if len(pair) == 2 and int(pair[0]) == 22:
            return int(pair[1])
    return 22


class CloudRiftProvider(VMProvider):
    """Create, delete and list CloudRift VMs. See the module docstring for the rules."""

    name = PROVIDER

    def __init__(self, config: CloudRiftConfig, session: requests.Session | None = None,
                 sleep=time.sleep, clock=time.monotonic):
        self.config = config
        self.client = CloudRiftClient(config, session)
        self._sleep = sleep
        self._clock = clock

    # Create.

    def rent_body(self, spec: VMSpec) -> dict:
        """The `instances/rent` data for a spec."""
        return {
            "selector": {"ByInstanceTypeAndLocation": {"instance_type": spec.instance_type}},
            "config": {
                "VirtualMachine": {
                    "image_url": self.config.image_url,
                    "cloudinit_url": self.config.cloudinit_url,
                    "ssh_key": {"PublicKeys": [spec.ssh_public_key.strip()]},
                }
            },
            "ports": [str(port) for port in spec.ports],
            "with_public_ip": True,
            "name": spec.name,
            "cluster_name": cluster_name(spec.labels.get(RUN_LABEL, "manual")),
        }

    def plan_create(self, spec: VMSpec) -> list[ApiCall]:
        """The calls `create_instance(spec)` would make, for dry runs."""
        c = self.config
        return [
            self.client.describe("instance-types/list", {"selector": "All"},
                                 f"check {spec.instance_type} has a free node"),
            self.client.describe("instances/rent", self.rent_body(spec)),
            self.client.describe(
                "instances/list",
                {"selector": {"ById": ["<new instance id>"]},
                 "mask": {"with_connection_info": True}},
                f"every {c.poll_interval_s:g}s until ready, at most {c.ready_deadline_s:g}s",
            ),
        ]

    def create_instance(self, spec: VMSpec) -> VMConnectionInfo:
        """Rent one VM, wait until it is ready, and return how to reach it.

        On any failure after the rent the instance is terminated before the error is
        raised; if that fails too, VMLeakError names the instance and the delete command.
        """
        self.check_capacity(spec.instance_type)
        logger.info("CloudRift: renting %s as %s", spec.instance_type, spec.name)
        instance_id = self._rent(spec)
        logger.info("CloudRift: rented %s (%s), waiting until ready", instance_id, spec.name)
        try:
            instance = self._wait_ready(instance_id, spec.name)
            return self._connection_info(instance, spec)
        except BaseException as error:
            self._terminate_after_failure(instance_id, spec.name, error)
            raise

    def check_capacity(self, instance_type: str) -> None:
        """CapacityError if the type has no free node or is not offered at all."""
        known = []
        for entry in self.client.instance_types():
            for variant in entry.get("variants") or []:
                known.append(variant.get("name"))
                if variant.get("name") != instance_type:
                    continue
                available = variant.get("available_nodes")
                if available is not None and int(available) <= 0:
                    raise CapacityError(
                        PROVIDER, f"no free node of type {instance_type} right now"
                    )
                return
        # Not in the catalog: a typo, or a type offered at other times. Either way this
        # candidate cannot be had now, so the next one should be tried.
        shown = ", ".join(sorted(str(name) for name in known if name)[:30]) or "none"
        raise CapacityError(
            PROVIDER, f"instance type {instance_type!r} is not offered now; offered: {shown}"
        )

    def _rent(self, spec: VMSpec) -> str:
        body = self.rent_body(spec)

        def rent_once() -> str:
            ids = self.client.call("instances/rent", body).get("instance_ids") or []
            if not ids:
                raise CapacityError(
                    PROVIDER, f"rent of {spec.instance_type} returned no instance: no capacity"
                )
            return str(ids[0])

        def already_rented() -> str | None:
            # A rent that failed on the way back may have gone through: look before renting.
            for poll in range(self.config.rent_recheck_polls):
                found = self.find_by_name(body["cluster_name"], spec.name)
                if found:
                    logger.info("CloudRift: the failed rent did go through: %s", found["id"])
                    return str(found["id"])
                if poll + 1 < self.config.rent_recheck_polls:
                    self._sleep(self.config.poll_interval_s)
            return None

        return call_with_retries(
            rent_once, self.config.retry, f"CloudRift rent of {spec.name}",
            before_retry=already_rented, sleep=self._sleep,
        )

    def find_by_name(self, cluster: str, name: str) -> dict | None:
        """Our live instance called `name` in `cluster`, if any."""
        for instance in self.client.list_instances({"ByClusterName": [cluster]}, False):
            if instance.get("name") == name and instance.get("status") not in GONE_STATUSES:
                return instance
        return None

    def _wait_ready(self, instance_id: str, name: str) -> dict:
        deadline = self._clock() + self.config.ready_deadline_s
        last: dict | None = None
        while True:
            try:
                listed = self.client.list_instances({"ById": [instance_id]}, True)
            except TransientCloudError as error:
                # A poll is repeated anyway: a failed one only costs an interval.
                logger.info("CloudRift: poll of %s failed, polling on: %s", instance_id, error)
                listed = []
            instance = next((i for i in listed if str(i.get("id")) == instance_id), None)
            if instance is not None:
                last = instance
                status = instance.get("status")
                if status == FAILED:
                    raise failure_error(instance_id, instance.get("failure"))
                if status in GONE_STATUSES:
                    raise TerminalCloudError(
                        PROVIDER, f"instance {instance_id} ({name}) became {status} "
                        "before it was ready"
                    )
                if is_ready(instance):
                    return instance
            if self._clock() >= deadline:
                lacking = ", ".join(missing_for_ready(last)) if last else "not listed yet"
                raise TransientCloudError(
                    PROVIDER,
                    f"instance {instance_id} ({name}) not ready after "
                    f"{self.config.ready_deadline_s:g}s (still lacking: {lacking})",
                )
            self._sleep(self.config.poll_interval_s)

    def _connection_info(self, instance: dict, spec: VMSpec) -> VMConnectionInfo:
        username, password = read_login(instance["virtual_machines"][0].get("login_info"))
        register_secret(password)
        mappings = tuple(
            (int(pair[0]), int(pair[1])) for pair in instance.get("port_mappings") or ()
        )
        instance_id = str(instance["id"])
        return VMConnectionInfo(
            provider=PROVIDER,
            instance_id=instance_id,
            name=spec.name,
            host=str(instance["host_address"]),
            ssh_port=ssh_port_of(mappings),
            username=username,
            delete_info={"provider": PROVIDER, "instance_id": instance_id, "name": spec.name},
            port_mappings=mappings,
            password=password,
        )

    def _terminate_after_failure(self, instance_id: str, name: str, cause: BaseException):
        logger.info("CloudRift: terminating %s (%s) after: %s", instance_id, name, cause)
        try:
            self.delete_instance({"instance_id": instance_id})
        except Exception as error:
            logger.warning("CloudRift: instance %s (%s) may be left running", instance_id, name)
            raise VMLeakError(
                PROVIDER,
                f"instance {instance_id} ({name}) failed ({cause}) and could not be "
                f"terminated ({error}); it may still be running and billing: delete it with "
                f"`{delete_command(instance_id)}`",
            ) from cause

    # Delete and list.

    def plan_delete(self, delete_info: dict) -> list[ApiCall]:
        """The calls `delete_instance(delete_info)` would make, for dry runs."""
        data = {"selector": {"ById": [_instance_id(delete_info)]}}
        return [self.client.describe("instances/terminate", data)]

    def delete_instance(self, delete_info: dict) -> bool:
        """Terminate; True if terminated now, False if it was already gone."""
        instance_id = _instance_id(delete_info)

        def terminate_once():
            return self.client.terminate([instance_id])

        def already_terminating():
            listed = self.client.list_instances({"ById": [instance_id]}, False)
            if not any(i.get("status") not in GONE_STATUSES for i in listed):
                return [{"id": instance_id}]
            return None

        terminated = call_with_retries(
            terminate_once, self.config.retry, f"CloudRift terminate of {instance_id}",
            before_retry=already_terminating, sleep=self._sleep,
        )
        done = any(str(entry.get("id", instance_id)) == instance_id for entry in terminated)
        logger.info(
            "CloudRift: %s %s", instance_id, "terminated" if done else "was already gone"
        )
        return done

    def list_instances(self, labels: dict[str, str] | None = None) -> list[VMSummary]:
        """Our instances not yet terminated (cluster `deplodock-*`), of one run when labels
        name it. Deactivating ones are left out: nothing more is to be done about them."""
        labels = labels or {}
        run = labels.get(RUN_LABEL)
        if run:
            selector = {"ByClusterName": [cluster_name(run)]}
        else:
            selector = {"ByStatus": list(LIVE_STATUSES)}
        found = []
        for instance in self.client.list_instances(selector, False):
            summary = _summary(instance)
            if summary is None or summary.status in GONE_STATUSES:
                continue
            if run and summary.labels.get(RUN_LABEL) != run:
                continue
            found.append(summary)
        return found

    def ensure_ssh_key(self, name: str, public_key: str) -> str:
        """The id of `public_key` on the account, registering it under `name` if new."""
        wanted = public_key.split()[:2]
        for key in self.client.list_ssh_keys():
            if str(key.get("public_key", "")).split()[:2] == wanted:
                return str(key["id"])
        return str(self.client.add_ssh_key(name, public_key.strip())["id"])


def failure_error(instance_id: str, failure) -> CloudError:
    """Capacity or terminal, by the failure cause of a Failed rental."""
    failure = failure if isinstance(failure, dict) else {}
    cause = str(failure.get("cause") or "unknown cause")
    message = str(failure.get("user_message") or "")
    text = f"instance {instance_id} failed: {cause}" + (f" ({message})" if message else "")
    if cause in CAPACITY_FAILURE_CAUSES:
        return CapacityError(PROVIDER, text)
    return TerminalCloudError(PROVIDER, text)


def _instance_id(delete_info: dict) -> str:
    instance_id = delete_info.get("instance_id")
    if not instance_id:
        raise TerminalCloudError(PROVIDER, f"delete_info has no instance_id: {delete_info}")
    return str(instance_id)


def _summary(instance: dict) -> VMSummary | None:
    cluster = str(instance.get("cluster_name") or "")
    name = str(instance.get("name") or "")
    prefix = f"{NAME_PREFIX}-"
    if not (cluster.startswith(prefix) or name.startswith(prefix)):
        return None  # not ours
    labels = {MANAGED_LABEL: "true"}
    if cluster.startswith(prefix):
        labels[RUN_LABEL] = cluster[len(prefix):]
    instance_id = str(instance.get("id"))
    return VMSummary(
        provider=PROVIDER,
        instance_id=instance_id,
        name=name,
        status=str(instance.get("status")),
        labels=labels,
        delete_info={"provider": PROVIDER, "instance_id": instance_id, "name": name},
    )
