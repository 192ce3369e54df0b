"""Google Compute Engine provider over google-api-python-client's compute v1 (no gcloud).

`build("compute", "v1", static_discovery=True)` reads the discovery document from the wheel,
so building the client does no network I/O; `api_endpoint` points it at a fake in tests.
Credentials come from the usual Google sources (`google.auth.default()`), or are given.

A VM is inserted with a request id (so a retried insert never makes two), labels carrying
the run id and group, and a maximum run duration after which Google deletes it: the last net
if every other cleanup fails. Errors: ZONE_RESOURCE_POOL_EXHAUSTED is capacity; quota and
permission errors are terminal; 429, 5xx and rate-limit 403s are transient.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from deplodock_dagster.errors import (
    CapacityError,
    CloudError,
    TerminalCloudError,
    TransientCloudError,
    VMLeakError,
)
from deplodock_dagster.vm.api_calls import ApiCall
from deplodock_dagster.vm.retry import RetryPolicy, call_with_retries
from deplodock_dagster.vm.types import (
    MANAGED_LABEL,
    VMConnectionInfo,
    VMProvider,
    VMSpec,
    VMSummary,
)

logger = logging.getLogger(__name__)

PROVIDER = "gcp"
DEFAULT_IMAGE = (
    "projects/ubuntu-os-accelerator-images/global/images/family/"
    "ubuntu-accelerator-2404-amd64-with-nvidia-570"
)
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
STANDARD, SPOT, FLEX_START = "STANDARD", "SPOT", "FLEX_START"
PROVISIONING_MODELS = (STANDARD, SPOT, FLEX_START)

CAPACITY_CODES = ("ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS")
QUOTA_CODES = ("QUOTA_EXCEEDED", "quotaExceeded")
RATE_LIMIT_REASONS = (
    "rateLimitExceeded", "userRateLimitExceeded", "RESOURCE_OPERATION_RATE_EXCEEDED",
    "RATE_LIMIT_EXCEEDED",
)
STOPPED_STATUSES = ("STOPPING", "STOPPED", "TERMINATED", "SUSPENDING", "SUSPENDED")


@dataclass(frozen=True)
class GcpConfig:
    """Project, zone, endpoint and the VM shape; waits and retries."""

    project: str
    zone: str | None = None  # default zone when the spec names none
    endpoint: str | None = None  # None: the real API
    credentials: object = field(default=None, repr=False)  # None: google.auth.default()
    image: str = DEFAULT_IMAGE
    disk_size_gb: int = 500
    network: str = "global/networks/default"
    service_account: str | None = None
    network_tags: tuple[str, ...] = ()
    provisioning_model: str = FLEX_START
    max_run_duration_s: int = 8 * 3600
    capacity_wait_s: int = 2 * 3600  # FLEX_START: how long Google may look for capacity
    request_timeout_s: float = 150.0  # zoneOperations.wait blocks up to ~2 minutes
    poll_interval_s: float = 5.0
    operation_deadline_s: float = 3 * 3600.0  # FLEX_START may wait for capacity
    ready_deadline_s: float = 900.0
    retry: RetryPolicy = RetryPolicy()


def delete_command(name: str, zone: str) -> str:
    """The CLI command that deletes a GCP VM by hand."""
    return f"deplodock vm delete gcp --name {name} --zone {zone}"


def _error_details(error) -> tuple[int, str, str]:
    """(HTTP status, first reason, message) of a googleapiclient HttpError."""
    status = int(getattr(error.resp, "status", 0) or 0)
    reason, message = "", str(error)
    try:
        payload = json.loads(error.content.decode("utf-8", "replace"))["error"]
        message = payload.get("message") or message
        errors = payload.get("errors") or []
        if errors:
            reason = errors[0].get("reason", "")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return status, reason, message


def classify_http_error(what: str, error) -> CloudError:
    """Capacity, transient or terminal, for an HttpError from the compute API."""
    status, reason, message = _error_details(error)
    text = f"{what}: HTTP {status} {reason}: {message}".replace(" :", ":")
    if reason in QUOTA_CODES:
        return TerminalCloudError(
            PROVIDER, f"{text}; quota exceeded: raise the quota or choose another region/type"
        )
    if reason in RATE_LIMIT_REASONS or status == 429 or status >= 500:
        return TransientCloudError(PROVIDER, text)
    if status in (401, 403):
        return TerminalCloudError(
            PROVIDER, f"{text}; check the Google credentials and their Compute permissions"
        )
    return TerminalCloudError(PROVIDER, text)


def classify_operation_errors(what: str, errors: list[dict]) -> CloudError:
    """The error class for a failed operation's `error.errors`."""
    codes = [str(e.get("code", "")) for e in errors]
    text = f"{what}: " + "; ".join(f"{e.get('code')}: {e.get('message', '')}" for e in errors)
    if any(code in CAPACITY_CODES for code in codes):
        return CapacityError(PROVIDER, text)
    if any(code in QUOTA_CODES for code in codes):
        return TerminalCloudError(PROVIDER, f"{text}; raise the quota or choose another region")
    if any(code in RATE_LIMIT_REASONS for code in codes):
        return TransientCloudError(PROVIDER, text)
    return TerminalCloudError(PROVIDER, text)


def nat_ip(instance: dict) -> str | None:
    """The external IP: networkInterfaces[0].accessConfigs[0].natIP."""
    try:
        return instance["networkInterfaces"][0]["accessConfigs"][0].get("natIP")
    except (KeyError, IndexError, TypeError):
        return None


class GcpProvider(VMProvider):
    """Create, delete and list GCE VMs. See the module docstring."""

    name = PROVIDER

    def __init__(self, config: GcpConfig, sleep=time.sleep, clock=time.monotonic):
        if not config.project:
            raise TerminalCloudError(PROVIDER, "no project: set GCP_PROJECT")
        if config.provisioning_model not in PROVISIONING_MODELS:
            raise TerminalCloudError(
                PROVIDER, f"provisioning model {config.provisioning_model!r} is not one of "
                f"{', '.join(PROVISIONING_MODELS)}"
            )
        self.config = config
        self._sleep = sleep
        self._clock = clock
        self._service = None

    # The client.

    def _build(self, credentials):
        import google_auth_httplib2
        import httplib2
        from googleapiclient.discovery import build

        # Same as build(credentials=...), but with an http that has a timeout on every call.
        http = google_auth_httplib2.AuthorizedHttp(
            credentials, http=httplib2.Http(timeout=self.config.request_timeout_s)
        )
        options = {"api_endpoint": self.config.endpoint} if self.config.endpoint else None
        return build("compute", "v1", static_discovery=True, http=http,
                     client_options=options, cache_discovery=False)

    @property
    def compute(self):
        """The compute v1 service (built on first use)."""
        if self._service is None:
            credentials = self.config.credentials
            if credentials is None:
                import google.auth
                import google.auth.exceptions

                try:
                    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
                except google.auth.exceptions.DefaultCredentialsError as error:
                    raise TerminalCloudError(
                        PROVIDER, f"no Google credentials found ({error}); set "
                        "GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
                    ) from error
            self._service = self._build(credentials)
        return self._service

    def _execute(self, request, what: str, *, retry: bool = True, missing_ok: bool = False):
        """Run one API request; classify errors; None for 404 when `missing_ok`."""
        import httplib2
        from googleapiclient.errors import HttpError

        def once():
            logger.debug("GCP %s %s %s", request.method, request.uri, request.body or "")
            try:
                return request.execute(num_retries=0)
            except HttpError as error:
                if missing_ok and int(error.resp.status) == 404:
                    return None
                raise classify_http_error(what, error) from error
            except (OSError, httplib2.HttpLib2Error) as error:
                raise TransientCloudError(PROVIDER, f"{what}: network error: {error}") from error

        if not retry:
            return once()
        return call_with_retries(once, self.config.retry, f"GCP {what}", sleep=self._sleep)

    # Create.

    def _zone(self, spec_zone: str | None) -> str:
        zone = spec_zone or self.config.zone
        if not zone:
            raise TerminalCloudError(PROVIDER, "no zone: set GCP_ZONE")
        return zone

    def scheduling(self, max_run_duration_s: int | None) -> dict:
        """The `scheduling` block for the configured provisioning model."""
        model = self.config.provisioning_model
        duration = {"seconds": str(int(max_run_duration_s or self.config.max_run_duration_s))}
        return {
            "provisioningModel": model,
            "onHostMaintenance": "TERMINATE",  # GPU VMs cannot live-migrate
            "automaticRestart": model == STANDARD,
            # Google deletes the VM when the duration ends: the net under every cleanup.
            "instanceTerminationAction": "DELETE",
            "maxRunDuration": duration,
        }

    def insert_body(self, spec: VMSpec) -> dict:
        """The `instances.insert` body for a spec."""
        zone = self._zone(spec.zone)
        c = self.config
        body = {
            "name": spec.name,
            "machineType": f"zones/{zone}/machineTypes/{spec.instance_type}",
            "disks": [{
                "boot": True,
                "autoDelete": True,
                "initializeParams": {"sourceImage": c.image, "diskSizeGb": str(c.disk_size_gb)},
            }],
            "networkInterfaces": [{
                "network": c.network,
                "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}],
            }],
            "scheduling": self.scheduling(spec.max_run_duration_s),
            "metadata": {"items": [
                {"key": "ssh-keys", "value": f"{spec.ssh_user}:{spec.ssh_public_key.strip()}"}
            ]},
            "labels": dict(spec.labels),
        }
        if c.provisioning_model == FLEX_START:
            body["params"] = {"requestValidForDuration": {"seconds": str(c.capacity_wait_s)}}
            body["reservationAffinity"] = {"consumeReservationType": "NO_RESERVATION"}
        if c.service_account:
            body["serviceAccounts"] = [
                {"email": c.service_account, "scopes": [CLOUD_PLATFORM_SCOPE]}
            ]
        if c.network_tags:
            body["tags"] = {"items": list(c.network_tags)}
        return body

    def create_instance(self, spec: VMSpec) -> VMConnectionInfo:
        """Insert a VM, wait for its operation and for RUNNING, return how to reach it.

        On a failure after the insert the VM is deleted before the error is raised; if the
        delete fails too, VMLeakError names the VM and the command to delete it.
        """
        zone = self._zone(spec.zone)
        body = self.insert_body(spec)
        request = self.compute.instances().insert(
            project=self.config.project, zone=zone, body=body, requestId=str(uuid.uuid4())
        )
        logger.info("GCP: inserting %s (%s, %s) in %s", spec.name, spec.instance_type,
                    self.config.provisioning_model, zone)
        accepted = False
        try:
            # The request id makes repeating the same request safe: Google answers a
            # repeat with the first operation instead of inserting again.
            operation = self._execute(request, f"insert {spec.name}")
            accepted = True
            self._wait_operation(operation, zone, f"insert {spec.name}")
            instance = self._wait_running(spec.name, zone)
        except BaseException as error:
            # An insert refused outright (quota, permission) made nothing; anything else
            # (including a transient failure whose insert may have landed) is cleaned up.
            refused = isinstance(error, (TerminalCloudError, CapacityError))
            if accepted or not refused:
                self._delete_after_failure(spec.name, zone, error)
            raise
        host = nat_ip(instance)
        logger.info("GCP: %s is RUNNING at %s", spec.name, host)
        return VMConnectionInfo(
            provider=PROVIDER,
            instance_id=spec.name,  # GCE addresses instances by name (zone-unique)
            name=spec.name,
            host=host,
            ssh_port=22,
            username=spec.ssh_user,
            delete_info=self._delete_info(spec.name, zone),
        )

    def _delete_info(self, name: str, zone: str) -> dict:
        return {"provider": PROVIDER, "project": self.config.project, "zone": zone,
                "name": name, "instance_id": name}

    def _wait_operation(self, operation: dict, zone: str, what: str) -> None:
        deadline = self._clock() + self.config.operation_deadline_s
        while operation.get("status") != "DONE":
            if self._clock() >= deadline:
                raise TransientCloudError(
                    PROVIDER, f"{what}: operation {operation.get('name')} not done after "
                    f"{self.config.operation_deadline_s:g}s (status {operation.get('status')})"
                )
            # zoneOperations.wait blocks until DONE or about two minutes: loop on it.
            request = self.compute.zoneOperations().wait(
                project=self.config.project, zone=zone, operation=operation["name"]
            )
            try:
                operation = self._execute(request, f"{what} (wait)")
            except TransientCloudError as error:
                # Waiting again is harmless: a failed wait only costs an interval.
                logger.info("GCP: %s: wait failed, waiting on: %s", what, error)
            if operation.get("status") != "DONE":
                self._sleep(self.config.poll_interval_s)
        errors = (operation.get("error") or {}).get("errors") or []
        if errors:
            raise classify_operation_errors(what, errors)

    def _wait_running(self, name: str, zone: str) -> dict:
        deadline = self._clock() + self.config.ready_deadline_s
        status = "unknown"
        while True:
            request = self.compute.instances().get(
                project=self.config.project, zone=zone, instance=name
            )
            try:
                instance = self._execute(request, f"get {name}", missing_ok=True)
            except TransientCloudError as error:
                logger.info("GCP: poll of %s failed, polling on: %s", name, error)
                instance = {"status": status}
            if instance is None:
                raise CapacityError(
                    PROVIDER, f"{name} in {zone} disappeared before RUNNING (capacity request "
                    "expired or the VM was preempted)"
                )
            status = instance.get("status", "unknown")
            if status == "RUNNING" and nat_ip(instance):
                return instance
            if status in STOPPED_STATUSES:
                raise CapacityError(
                    PROVIDER, f"{name} in {zone} is {status} before it ever ran (preempted?)"
                )
            if self._clock() >= deadline:
                raise TransientCloudError(
                    PROVIDER, f"{name} in {zone} not RUNNING with an external IP after "
                    f"{self.config.ready_deadline_s:g}s (status {status})"
                )
            self._sleep(self.config.poll_interval_s)

    def _delete_after_failure(self, name: str, zone: str, cause: BaseException) -> None:
        logger.info("GCP: deleting %s after: %s", name, cause)
        try:
            self.delete_instance(self._delete_info(name, zone))
        except Exception as error:
            logger.warning("GCP: VM %s in %s may be left running", name, zone)
            raise VMLeakError(
                PROVIDER,
                f"VM {name} in {zone} failed ({cause}) and could not be deleted ({error}); "
                f"it may still be running and billing: delete it with "
                f"`{delete_command(name, zone)}`",
            ) from cause

    # Delete and list.

    def delete_instance(self, delete_info: dict) -> bool:
        """Delete and wait for the operation; False if it was already gone (404)."""
        name = delete_info.get("name") or delete_info.get("instance_id")
        zone = self._zone(delete_info.get("zone"))
        project = delete_info.get("project") or self.config.project
        if not name:
            raise TerminalCloudError(PROVIDER, f"delete_info has no name: {delete_info}")
        request = self.compute.instances().delete(project=project, zone=zone, instance=name)
        operation = self._execute(request, f"delete {name}", missing_ok=True)
        if operation is None:
            logger.info("GCP: %s in %s was already gone", name, zone)
            return False
        self._wait_operation(operation, zone, f"delete {name}")
        logger.info("GCP: deleted %s in %s", name, zone)
        return True

    def list_instances(self, labels: dict[str, str] | None = None) -> list[VMSummary]:
        """Our VMs in every zone of the project, filtered by labels."""
        wanted = {MANAGED_LABEL: "true", **(labels or {})}
        # Parenthesized expressions are ANDed; quoting keeps hyphenated values one token.
        filter_text = " ".join(f'(labels.{key} = "{value}")' for key, value in wanted.items())
        found: list[VMSummary] = []
        instances = self.compute.instances()
        request = instances.aggregatedList(project=self.config.project, filter=filter_text)
        while request is not None:
            page = self._execute(request, "list instances")
            for scope in (page.get("items") or {}).values():
                for instance in scope.get("instances") or []:
                    found.append(self._summary(instance))
            request = instances.aggregatedList_next(request, page)
        return found

    def _summary(self, instance: dict) -> VMSummary:
        zone = str(instance.get("zone", "")).rsplit("/", 1)[-1]
        name = instance["name"]
        return VMSummary(
            provider=PROVIDER,
            instance_id=name,
            name=name,
            status=str(instance.get("status")),
            labels=dict(instance.get("labels") or {}),
            delete_info=self._delete_info(name, zone),
        )

    # Dry runs.

    def _planning_service(self):
        from google.auth.credentials import AnonymousCredentials

        return self._build(AnonymousCredentials())

    def plan_create(self, spec: VMSpec) -> list[ApiCall]:
        """The calls `create_instance(spec)` would make, built but not sent."""
        zone = self._zone(spec.zone)
        compute = self._planning_service()
        insert = compute.instances().insert(project=self.config.project, zone=zone,
                                            body=self.insert_body(spec), requestId="<uuid>")
        wait = compute.zoneOperations().wait(project=self.config.project, zone=zone,
                                             operation="operation-from-the-insert")
        get = compute.instances().get(project=self.config.project, zone=zone,
                                      instance=spec.name)
        return [
            _api_call(insert),
            _api_call(wait, "until the operation is DONE"),
            _api_call(get, f"every {self.config.poll_interval_s:g}s until RUNNING"),
        ]

    def plan_delete(self, delete_info: dict) -> list[ApiCall]:
        """The calls `delete_instance(delete_info)` would make."""
        compute = self._planning_service()
        name = delete_info.get("name") or delete_info.get("instance_id")
        zone = self._zone(delete_info.get("zone"))
        request = compute.instances().delete(
            project=delete_info.get("project") or self.config.project, zone=zone, instance=name
        )
        return [_api_call(request, "then zoneOperations.wait until DONE")]


def _api_call(request, note: str = "") -> ApiCall:
    body = json.loads(request.body) if request.body else None
    return ApiCall(request.method, request.uri, body, note=note)

