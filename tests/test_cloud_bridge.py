"""deploy/cloud.py: candidates, provisioning with fallbacks and SSH wait, delete, list."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from deplodock_dagster.hosts import vm_known_hosts_path
from deplodock_dagster.deploy.cloud import (
    CloudSettings,
    delete_cloud_vm,
    list_managed_vms,
    provision_cloud_vm,
    resolve_vm_spec,
)
from deplodock_dagster.errors import CapacityError, ConfigError, HostError, TerminalCloudError
from deplodock_dagster.secrets import RedactingFilter
from deplodock_dagster.vm.naming import is_valid_name
from deplodock_dagster.vm.types import GROUP_LABEL, RUN_LABEL

RUN_ID = "c0ffee00-1234-4abc-9def-0123456789ab"
RTX4090 = "NVIDIA GeForce RTX 4090"
H200 = "NVIDIA H200 141GB"


def test_resolve_vm_spec_orders_candidates_and_names_vms(cloud_settings):
    specs = resolve_vm_spec("h200", 8, settings=cloud_settings, run_id=RUN_ID,
                            group_label="h200x8-llama")
    assert [(s.provider, s.instance_type) for s in specs] == [
        ("cloudrift", "h200-8-generic.8"), ("gcp", "a3-ultragpu-8g")]
    spec = specs[0]
    assert spec.gpu_name == H200 and spec.gpu_count == 8
    assert is_valid_name(spec.name) and spec.name.startswith("deplodock-c0ffee00-h200x8")
    assert spec.labels[RUN_LABEL] == RUN_ID and spec.labels[GROUP_LABEL] == "h200x8-llama"
    assert spec.ssh_public_key.startswith("ssh-ed25519 ")
    assert specs[1].zone == "us-central1-a"


def test_resolve_vm_spec_without_a_usable_provider_says_what_to_set(cloud_settings):
    settings = cloud_settings.replace(cloudrift_api_key=None)
    with pytest.raises(ConfigError, match="CLOUDRIFT_API_KEY"):
        resolve_vm_spec(RTX4090, 1, settings=settings, run_id=RUN_ID, group_label="g")
    settings = cloud_settings.replace(providers=("gcp",))
    with pytest.raises(ConfigError, match="not in DEPLODOCK_PROVIDERS"):
        resolve_vm_spec(RTX4090, 1, settings=settings, run_id=RUN_ID, group_label="g")


def test_provision_cloudrift_moves_past_a_type_without_capacity(cloud_settings,
                                                                fake_cloudrift):
    fake_cloudrift.no_capacity("rtx49-10c-kn.1")
    conn = provision_cloud_vm(RTX4090, 1, settings=cloud_settings, run_id=RUN_ID,
                              group_label="rtx4090x1")
    instance = fake_cloudrift.instances[conn.instance_id]
    assert instance.instance_type == "rtx49-7c-kn.1"
    assert conn.host == instance.vm.address and conn.ssh_port == instance.vm.port
    # wait_for_ssh logged in and recorded the VM's host key, in the VM's own file.
    assert instance.vm.address in Path(vm_known_hosts_path(conn)).read_text()

    assert [vm.name for vm in list_managed_vms(cloud_settings, run_id=RUN_ID)] == [conn.name]
    assert delete_cloud_vm(conn.delete_info, settings=cloud_settings) is True
    assert delete_cloud_vm(conn.delete_info, settings=cloud_settings) is False
    assert fake_cloudrift.live_instances() == []
    assert list_managed_vms(cloud_settings, run_id=RUN_ID) == []


def test_provision_falls_back_from_cloudrift_to_gcp(cloud_settings, fake_cloudrift, fake_gce):
    fake_cloudrift.no_capacity("h200-8-generic.8", "rent_503")
    conn = provision_cloud_vm(H200, 8, settings=cloud_settings, run_id=RUN_ID,
                              group_label="h200x8")
    assert conn.provider == "gcp" and conn.username == "root"
    assert fake_cloudrift.live_instances() == []
    assert [i["name"] for i in fake_gce.live_instances()] == [conn.name]
    assert delete_cloud_vm(conn.delete_info, settings=cloud_settings) is True
    assert fake_gce.live_instances() == []


def test_no_capacity_anywhere_names_every_candidate(cloud_settings, fake_cloudrift, fake_gce):
    fake_cloudrift.no_capacity("h200-8-generic.8")
    fake_gce.pool_exhausted()
    with pytest.raises(CapacityError, match="2 candidate.*h200-8-generic.8.*"
                       "ZONE_RESOURCE_POOL_EXHAUSTED"):
        provision_cloud_vm(H200, 8, settings=cloud_settings, run_id=RUN_ID,
                           group_label="h200x8")
    assert fake_cloudrift.live_instances() == [] and fake_gce.live_instances() == []


def test_terminal_error_stops_without_trying_the_next_provider(cloud_settings, fake_gce):
    settings = cloud_settings.replace(cloudrift_api_key="wrong-key-0000")
    with pytest.raises(TerminalCloudError, match="check CLOUDRIFT_API_KEY"):
        provision_cloud_vm(H200, 8, settings=settings, run_id=RUN_ID, group_label="h200x8")
    assert fake_gce.calls == []


def test_vm_that_never_accepts_ssh_is_deleted(cloud_settings, fake_cloudrift):
    start_vm = fake_cloudrift.vm_factory

    def dead_vm(ports):
        vm = start_vm(ports)
        vm.stop()  # the port is closed: SSH never comes up
        return vm

    fake_cloudrift.vm_factory = dead_vm
    settings = cloud_settings.replace(ssh_deadline_s=1.0, ssh_poll_interval_s=0.2)
    with pytest.raises(HostError, match=r"never accepted SSH within 1s, so it was deleted"):
        provision_cloud_vm(RTX4090, 1, settings=settings, run_id=RUN_ID, group_label="g")
    assert fake_cloudrift.live_instances() == []


def test_secrets_reach_no_log_and_no_file(cloud_settings, fake_cloudrift, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    conn = provision_cloud_vm(RTX4090, 1, settings=cloud_settings, run_id=RUN_ID,
                              group_label="g")
    delete_cloud_vm(conn.delete_info, settings=cloud_settings)
    password = fake_cloudrift.instances[conn.instance_id].password
    assert conn.password == password
    redacting = RedactingFilter()
    logged = "\n".join(r.getMessage() for r in caplog.records if redacting.filter(r))
    assert "CloudRift" in logged  # something was logged at all
    for secret in (password, cloud_settings.cloudrift_api_key):
        assert secret not in logged
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    assert cloud_settings.cloudrift_api_key not in repr(cloud_settings)


def test_dry_run_delete_sends_nothing(cloud_settings, fake_cloudrift, caplog):
    caplog.set_level(logging.INFO)
    info = {"provider": "cloudrift", "instance_id": "abc-123"}
    assert delete_cloud_vm(info, settings=cloud_settings, dry_run=True) is False
    assert fake_cloudrift.calls == []
    assert "instances/terminate" in caplog.text and "abc-123" in caplog.text


def test_from_env_reads_every_setting(cloud_env):
    settings = CloudSettings.from_env(cloud_env)
    assert settings.cloudrift_api_url == cloud_env["CLOUDRIFT_API_URL"]
    assert settings.gcp_anonymous is True and settings.gcp_zone == "us-central1-a"
    assert settings.poll_interval_s == float(cloud_env["DEPLODOCK_VM_POLL_INTERVAL_S"])
    with pytest.raises(ConfigError, match="DEPLODOCK_PROVIDERS: unknown provider"):
        CloudSettings.from_env({"DEPLODOCK_PROVIDERS": "cloudrift,aws"})
    with pytest.raises(ConfigError, match="DEPLODOCK_VM_POLL_INTERVAL_S"):
        CloudSettings.from_env({"DEPLODOCK_VM_POLL_INTERVAL_S": "soon"})


@pytest.mark.parametrize("gpu,count", [(RTX4090, 1), ("NVIDIA H100 80GB", 8)])
def test_a_third_of_api_calls_failing_still_provisions_and_deletes(
        cloud_settings, fake_cloudrift, fake_gce, gpu, count):
    fake_cloudrift.fail_fraction(0.3, seed=7)
    fake_gce.fail_fraction(0.3, seed=7)
    settings = cloud_settings.replace(retry_attempts=6)
    conn = provision_cloud_vm(gpu, count, settings=settings, run_id=RUN_ID, group_label="g")
    assert delete_cloud_vm(conn.delete_info, settings=settings) is True
    failed = [c for c in fake_cloudrift.calls + fake_gce.calls if c.status >= 500]
    assert failed, "the fault hook injected nothing"
    assert fake_cloudrift.live_instances() == [] and fake_gce.live_instances() == []


def test_bridge_and_vm_cli_import_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys; from deplodock_dagster.cli import build_parser; build_parser(); "
            "import deplodock_dagster.deploy.cloud; "
            "print([m for m in ('googleapiclient', 'paramiko', 'pandas', 'dagster', 'requests')"
            " if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
