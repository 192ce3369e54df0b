"""Fixed hosts: loading the hosts file, lending hosts to groups, never deleting them."""

from __future__ import annotations

import pytest
import yaml

from deplodock_dagster.deploy.cloud import delete_cloud_vm, list_managed_vms, provision_cloud_vm
from deplodock_dagster.errors import CapacityError, ConfigError
from deplodock_dagster.vm.fixed import FixedHostsProvider, load_fixed_hosts
from deplodock_dagster.vm.naming import vm_labels, vm_name
from deplodock_dagster.vm.types import RUN_LABEL, VMSpec

H200 = "NVIDIA H200 141GB"


def write_hosts(path, hosts) -> str:
    path.write_text(yaml.safe_dump({"hosts": hosts}))
    return str(path)


def spec_for(gpu: str, count: int, group: str, run: str = "run-1") -> VMSpec:
    return VMSpec(provider="fixed", instance_type="fixed", gpu_name=gpu, gpu_count=count,
                  name=vm_name(run, group), ssh_public_key="", labels=vm_labels(run, group))


def test_load_resolves_short_gpu_names_and_defaults(tmp_path):
    path = write_hosts(tmp_path / "hosts.yaml", [
        {"name": "box", "address": "10.0.0.5", "gpu": "h200", "gpu_count": 8},
        {"name": "me", "transport": "local", "gpu": "cpu"},
    ])
    box, me = load_fixed_hosts(path)
    assert (box.gpu_name, box.gpu_count, box.port, box.user) == (H200, 8, 22, "root")
    assert (me.address, me.transport, me.gpu_name) == ("localhost", "local", "CPU")


@pytest.mark.parametrize("entry,field", [
    ({"gpu": "h200", "gpu_count": 8}, "hosts[0].address"),
    ({"address": "a", "gpu": "quantum-9000"}, "hosts[0].gpu"),
    ({"address": "a", "gpu": "h200", "gpu_count": 0}, "hosts[0].gpu_count"),
    ({"address": "a", "gpu": "h200", "port": "22x"}, "hosts[0].port"),
    ({"address": "a", "gpu": "h200", "transport": "telnet"}, "hosts[0].transport"),
])
def test_bad_hosts_file_names_file_and_field(tmp_path, entry, field):
    path = write_hosts(tmp_path / "hosts.yaml", [entry])
    with pytest.raises(ConfigError) as caught:
        load_fixed_hosts(path)
    assert str(path) in str(caught.value) and field in str(caught.value)


def test_hosts_are_lent_one_group_at_a_time_and_released(tmp_path):
    path = write_hosts(tmp_path / "hosts.yaml", [
        {"name": "big", "address": "10.0.0.8", "gpu": "h200", "gpu_count": 8},
        {"name": "small", "address": "10.0.0.2", "gpu": "h200", "gpu_count": 2},
    ])
    provider = FixedHostsProvider(load_fixed_hosts(path), tmp_path / "locks")
    first = provider.create_instance(spec_for(H200, 2, "a"))
    assert first.instance_id == "small"  # the smallest host that fits
    second = provider.create_instance(spec_for(H200, 2, "b"))
    assert second.instance_id == "big"
    with pytest.raises(CapacityError, match="in use: small .*big"):
        provider.create_instance(spec_for(H200, 1, "c"))
    with pytest.raises(CapacityError, match="no fixed host has 16"):
        provider.create_instance(spec_for(H200, 16, "d"))

    assert {vm.instance_id for vm in provider.list_instances({RUN_LABEL: "run-1"})} == {
        "small", "big"}
    # Another VM's delete_info does not release a host it does not hold.
    assert provider.delete_instance({**first.delete_info, "name": "someone-else"}) is False
    assert provider.delete_instance(first.delete_info) is True
    assert provider.delete_instance(first.delete_info) is False
    third = provider.create_instance(spec_for(H200, 1, "c"))
    assert third.instance_id == "small"


def test_bridge_prefers_a_matching_fixed_host_and_never_deletes_it(
        cloud_settings, fake_cloudrift, sshd, tmp_path):
    path = write_hosts(tmp_path / "hosts.yaml", [
        {"name": "lab", "address": sshd.address, "port": sshd.port, "user": "root",
         "gpu": "h200", "gpu_count": 8},
    ])
    settings = cloud_settings.replace(fixed_hosts_file=path)
    conn = provision_cloud_vm(H200, 8, settings=settings, run_id="r-1", group_label="h200x8")
    assert (conn.provider, conn.host, conn.ssh_port) == ("fixed", sshd.address, sshd.port)
    assert fake_cloudrift.calls == []
    assert [vm.name for vm in list_managed_vms(settings, run_id="r-1")] == [conn.name]

    # The host is busy, so a second group goes to the cloud.
    conn2 = provision_cloud_vm(H200, 8, settings=settings, run_id="r-1", group_label="other")
    assert conn2.provider == "cloudrift"
    delete_cloud_vm(conn2.delete_info, settings=settings)

    assert delete_cloud_vm(conn.delete_info, settings=settings) is True
    assert sshd.process is not None and sshd.process.poll() is None  # machine untouched
    assert list_managed_vms(settings, run_id="r-1") == []


def test_local_transport_for_the_cpu_recipe(cloud_settings, tmp_path):
    path = write_hosts(tmp_path / "hosts.yaml",
                       [{"name": "this-machine", "transport": "local", "gpu": "cpu"}])
    settings = cloud_settings.replace(fixed_hosts_file=path)
    conn = provision_cloud_vm("cpu", 1, settings=settings, run_id="r-2", group_label="cpux1")
    assert conn.transport == "local" and conn.provider == "fixed"
    assert delete_cloud_vm(conn.delete_info, settings=settings) is True


def test_hosts_given_in_settings(cloud_settings):
    settings = cloud_settings.replace(fixed_hosts=(
        {"name": "inline", "transport": "local", "gpu": "cpu"},))
    conn = provision_cloud_vm("cpu", 1, settings=settings, run_id="r-3", group_label="cpux1")
    assert conn.instance_id == "inline"
    assert delete_cloud_vm(conn.delete_info, settings=settings) is True
    bad = cloud_settings.replace(fixed_hosts=({"transport": "local", "gpu": "tpu"},))
    with pytest.raises(ConfigError, match=r"CloudSettings.fixed_hosts: hosts\[0\].gpu"):
        provision_cloud_vm("cpu", 1, settings=bad, run_id="r-3", group_label="cpux1")
