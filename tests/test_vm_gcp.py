"""GCP provider (google-api-python-client) against the fake Compute Engine API."""

from __future__ import annotations

import pytest
from google.auth.credentials import AnonymousCredentials

from deplodock_dagster.errors import CapacityError, TerminalCloudError, TransientCloudError
from deplodock_dagster.vm.gcp import FLEX_START, SPOT, STANDARD, GcpConfig, GcpProvider
from deplodock_dagster.vm.naming import vm_labels, vm_name
from deplodock_dagster.vm.retry import RetryPolicy
from deplodock_dagster.vm.types import GROUP_LABEL, MANAGED_LABEL, RUN_LABEL, VMSpec

ZONE = "us-central1-a"
RUN_ID = "7d1e0a44-aaaa-4bbb-8ccc-0123456789ab"


def make_provider(fake, **overrides) -> GcpProvider:
    config = dict(project="fake-project", zone=ZONE, endpoint=fake.endpoint,
                  credentials=AnonymousCredentials(), poll_interval_s=0.01,
                  operation_deadline_s=5.0, ready_deadline_s=5.0, request_timeout_s=10.0,
                  service_account="bench@fake-project.iam.gserviceaccount.com",
                  network_tags=("ssh", "bench"),
                  retry=RetryPolicy(max_attempts=4, backoff_base_s=0.01))
    config.update(overrides)
    return GcpProvider(GcpConfig(**config))


def make_spec(group: str = "h100x8", machine_type: str = "a3-highgpu-8g") -> VMSpec:
    return VMSpec(
        provider="gcp", instance_type=machine_type, gpu_name="NVIDIA H100 80GB", gpu_count=8,
        name=vm_name(RUN_ID, group), ssh_public_key="ssh-ed25519 AAAAC3Nz me@host",
        ssh_user="root", labels=vm_labels(RUN_ID, group), zone=ZONE,
        max_run_duration_s=3600,
    )


def test_create_flex_start_then_delete(fake_gce):
    provider = make_provider(fake_gce)
    spec = make_spec()

    conn = provider.create_instance(spec)

    vm = fake_gce.vms[(ZONE, spec.name)]
    assert (conn.host, conn.ssh_port, conn.username) == (vm.address, 22, "root")
    assert conn.delete_info == {"provider": "gcp", "project": "fake-project", "zone": ZONE,
                                "name": spec.name, "instance_id": spec.name}
    body = fake_gce.inserted_bodies[0]
    assert body["machineType"] == f"zones/{ZONE}/machineTypes/a3-highgpu-8g"
    assert body["scheduling"] == {
        "provisioningModel": FLEX_START, "onHostMaintenance": "TERMINATE",
        "automaticRestart": False, "instanceTerminationAction": "DELETE",
        "maxRunDuration": {"seconds": "3600"},
    }
    assert body["params"]["requestValidForDuration"] == {"seconds": "7200"}
    assert body["metadata"]["items"] == [
        {"key": "ssh-keys", "value": "root:ssh-ed25519 AAAAC3Nz me@host"}]
    assert body["labels"] == {RUN_LABEL: RUN_ID, GROUP_LABEL: "h100x8", MANAGED_LABEL: "true"}
    assert body["tags"] == {"items": ["ssh", "bench"]}
    assert body["serviceAccounts"][0]["email"].startswith("bench@")
    assert body["disks"][0]["initializeParams"]["sourceImage"].startswith("projects/")
    # The insert carried a request id; the operation was waited on with zoneOperations.wait.
    insert = fake_gce.calls_to("/instances")[0]
    assert insert.method == "POST" and insert.query.get("requestId")
    assert fake_gce.calls_to("/wait")

    assert provider.delete_instance(conn.delete_info) is True
    assert fake_gce.live_instances() == []
    assert vm.process is None  # the VM's sshd stopped
    assert provider.delete_instance(conn.delete_info) is False  # 404: already gone


@pytest.mark.parametrize("model", [STANDARD, SPOT])
def test_scheduling_for_standard_and_spot(fake_gce, model):
    provider = make_provider(fake_gce, provisioning_model=model)
    conn = provider.create_instance(make_spec())
    scheduling = fake_gce.inserted_bodies[0]["scheduling"]
    assert scheduling["provisioningModel"] == model
    assert scheduling["onHostMaintenance"] == "TERMINATE"
    assert scheduling["automaticRestart"] is (model == STANDARD)
    assert "params" not in fake_gce.inserted_bodies[0]
    provider.delete_instance(conn.delete_info)


@pytest.mark.parametrize("details", [False, True])
def test_zone_resource_pool_exhausted_is_capacity(fake_gce, details):
    fake_gce.pool_exhausted(with_details=details)
    with pytest.raises(CapacityError, match="ZONE_RESOURCE_POOL_EXHAUSTED"):
        make_provider(fake_gce).create_instance(make_spec())
    assert fake_gce.live_instances() == []


def test_quota_exceeded_is_terminal_with_the_quota_message_and_no_retry(fake_gce):
    fake_gce.quota_exceeded("http")
    with pytest.raises(TerminalCloudError, match="Quota 'GPUS_ALL_REGIONS' exceeded"):
        make_provider(fake_gce).create_instance(make_spec())
    assert len(fake_gce.calls) == 1  # one insert: no retry, nothing to delete


def test_quota_exceeded_in_the_operation_is_terminal(fake_gce):
    fake_gce.quota_exceeded("operation")
    with pytest.raises(TerminalCloudError, match="QUOTA_EXCEEDED"):
        make_provider(fake_gce).create_instance(make_spec())
    assert fake_gce.live_instances() == []


@pytest.mark.parametrize("status", [503, 429, 403])
def test_transient_errors_are_retried(fake_gce, status):
    fake_gce.fail_next(2, status)  # 403 with reason rateLimitExceeded
    conn = make_provider(fake_gce).create_instance(make_spec())
    assert len(fake_gce.live_instances()) == 1
    make_provider(fake_gce).delete_instance(conn.delete_info)


def test_retried_insert_with_the_same_request_id_makes_one_vm(fake_gce):
    fake_gce.fail_next(1, 503, path_contains="/instances", after_handling=True)
    provider = make_provider(fake_gce)
    conn = provider.create_instance(make_spec())
    inserts = [c for c in fake_gce.calls_to("/instances") if c.method == "POST"]
    assert len(inserts) == 2 and inserts[0].query["requestId"] == inserts[1].query["requestId"]
    assert len(fake_gce.live_instances()) == 1
    provider.delete_instance(conn.delete_info)


def test_never_running_is_deleted_with_clear_message(fake_gce):
    fake_gce.never_running()
    provider = make_provider(fake_gce, ready_deadline_s=0.5)
    spec = make_spec()
    with pytest.raises(TransientCloudError, match=rf"{spec.name} .*not RUNNING .*STAGING"):
        provider.create_instance(spec)
    assert fake_gce.live_instances() == []


def test_list_by_run_label(fake_gce):
    provider = make_provider(fake_gce)
    a = provider.create_instance(make_spec("h100x8"))
    b = provider.create_instance(make_spec("h100x4"))
    found = provider.list_instances({RUN_LABEL: RUN_ID})
    assert sorted(vm.name for vm in found) == sorted([a.name, b.name])
    assert found[0].delete_info["zone"] == ZONE
    assert provider.list_instances({RUN_LABEL: "some-other-run"}) == []
    for conn in (a, b):
        provider.delete_instance(conn.delete_info)
    assert provider.list_instances() == []


def test_plan_create_builds_the_requests_without_sending(fake_gce):
    calls = make_provider(fake_gce).plan_create(make_spec())
    assert fake_gce.calls == []
    assert calls[0].method == "POST"
    assert "/compute/v1/projects/fake-project/zones/us-central1-a/instances" in calls[0].url
    assert calls[0].body["name"].startswith("deplodock-7d1e0a44-h100x8-")


def test_permission_denied_is_terminal_and_not_retried(fake_gce):
    from tests.fakes.gce import gce_error

    fake_gce.fail_next(5, 403, body=gce_error(
        403, "forbidden", "Required 'compute.instances.create' permission"))
    with pytest.raises(TerminalCloudError, match="compute.instances.create.*credentials"):
        make_provider(fake_gce).create_instance(make_spec())
    assert len(fake_gce.calls) == 1
