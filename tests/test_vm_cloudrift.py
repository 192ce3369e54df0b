"""CloudRift provider against the fake CloudRift API, through real HTTP."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deplodock_dagster.errors import (
    CapacityError,
    TerminalCloudError,
    TransientCloudError,
    VMLeakError,
)
from deplodock_dagster.vm.cloudrift import (
    CloudRiftConfig,
    CloudRiftProvider,
    read_login,
    ssh_port_of,
)
from deplodock_dagster.vm.naming import vm_labels, vm_name
from deplodock_dagster.vm.retry import RetryPolicy
from deplodock_dagster.vm.types import RUN_LABEL, VMSpec

TYPE = "rtx49-7c-kn.1"
RUN_ID = "0f3c2a9e-1111-4222-8333-444455556666"


def make_provider(fake, **overrides) -> CloudRiftProvider:
    config = dict(api_key=fake.api_key, api_url=fake.base_url, poll_interval_s=0.01,
                  ready_deadline_s=5.0, request_timeout_s=5.0,
                  retry=RetryPolicy(max_attempts=4, backoff_base_s=0.01))
    config.update(overrides)
    return CloudRiftProvider(CloudRiftConfig(**config))


def make_spec(instance_type: str = TYPE, group: str = "rtx4090x1") -> VMSpec:
    return VMSpec(
        provider="cloudrift", instance_type=instance_type, gpu_name="NVIDIA GeForce RTX 4090",
        gpu_count=1, name=vm_name(RUN_ID, group), ssh_public_key="ssh-ed25519 AAAAC3Nz test",
        labels=vm_labels(RUN_ID, group), ports=(22, 8000),
    )


def test_create_waits_until_truly_ready_then_delete(fake_cloudrift):
    provider = make_provider(fake_cloudrift)
    spec = make_spec()

    conn = provider.create_instance(spec)

    instance = fake_cloudrift.instances[conn.instance_id]
    assert instance.phase() == "ready" and instance.status == "Active"
    assert (conn.host, conn.ssh_port) == (instance.vm.address, instance.vm.port)
    assert conn.username == "root" and conn.password == instance.password
    assert conn.public_port(8000) == 8000
    # The rent carried the inline key, ports, public IP, name and the run's cluster name.
    rent = fake_cloudrift.calls_to("instances/rent")[0].body
    assert rent["version"] == "~upcoming"
    data = rent["data"]
    assert data["config"]["VirtualMachine"]["ssh_key"] == {
        "PublicKeys": ["ssh-ed25519 AAAAC3Nz test"]}
    assert data["ports"] == ["22", "8000"] and data["with_public_ip"] is True
    assert data["name"] == spec.name and RUN_ID[:8] in spec.name
    assert data["cluster_name"] == f"deplodock-{RUN_ID}"
    # Polling went on past the first Active answer (connection details came later).
    assert len(fake_cloudrift.calls_to("instances/list")) >= 6

    assert provider.delete_instance(conn.delete_info) is True
    assert fake_cloudrift.live_instances() == []
    assert instance.vm.process is None  # the VM's sshd stopped
    assert provider.delete_instance(conn.delete_info) is False  # already gone


def test_list_by_run_id_finds_only_that_run(fake_cloudrift):
    provider = make_provider(fake_cloudrift)
    conn = provider.create_instance(make_spec())
    other = make_spec()
    other = VMSpec(**{**other.__dict__, "labels": vm_labels("another-run", "g"),
                      "name": vm_name("another-run", "g")})
    conn_other = provider.create_instance(other)

    mine = provider.list_instances({RUN_LABEL: RUN_ID})
    assert [vm.instance_id for vm in mine] == [conn.instance_id]
    assert mine[0].labels[RUN_LABEL] == RUN_ID and mine[0].name == conn.name
    everything = {vm.instance_id for vm in provider.list_instances()}
    assert everything == {conn.instance_id, conn_other.instance_id}

    provider.delete_instance(conn.delete_info)
    provider.delete_instance(conn_other.delete_info)
    assert provider.list_instances({RUN_LABEL: RUN_ID}) == []


@pytest.mark.parametrize("mode", ["zero_nodes", "rent_503", "empty_ids"])
def test_no_capacity_is_a_capacity_error(fake_cloudrift, mode):
    fake_cloudrift.no_capacity(TYPE, mode)
    with pytest.raises(CapacityError, match="no"):
        make_provider(fake_cloudrift).create_instance(make_spec())
    assert fake_cloudrift.live_instances() == []


def test_instance_type_not_offered_is_capacity_naming_what_is(fake_cloudrift):
    with pytest.raises(CapacityError, match=r"'nope.1' is not offered now; offered: .*rtx49"):
        make_provider(fake_cloudrift).create_instance(make_spec("nope.1"))
    assert fake_cloudrift.calls_to("instances/rent") == []


def test_503_burst_is_retried(fake_cloudrift):
    fake_cloudrift.fail_next(3, 503)
    conn = make_provider(fake_cloudrift).create_instance(make_spec())
    assert conn.host
    assert len(fake_cloudrift.live_instances()) == 1


def test_endless_503_gives_up_after_bounded_attempts(fake_cloudrift):
    fake_cloudrift.fail_fraction(1.0, status=503)
    with pytest.raises(TransientCloudError, match="after 4 attempts"):
        make_provider(fake_cloudrift).create_instance(make_spec())
    assert len(fake_cloudrift.calls) == 4


def test_rent_that_landed_but_answered_503_is_not_rented_twice(fake_cloudrift):
    fake_cloudrift.fail_next(1, 503, path_contains="instances/rent", after_handling=True)
    conn = make_provider(fake_cloudrift).create_instance(make_spec())
    assert len(fake_cloudrift.calls_to("instances/rent")) == 1
    assert [i.id for i in fake_cloudrift.live_instances()] == [conn.instance_id]


def test_wrong_api_key_is_terminal_without_retry_storm(fake_cloudrift):
    provider = make_provider(fake_cloudrift, api_key="wrong-key-123456")
    with pytest.raises(TerminalCloudError, match="check CLOUDRIFT_API_KEY"):
        provider.create_instance(make_spec())
    assert len(fake_cloudrift.calls) == 1
    assert fake_cloudrift.calls[0].status == 401


def test_never_ready_is_terminated_with_clear_message(fake_cloudrift):
    fake_cloudrift.never_ready(TYPE)
    provider = make_provider(fake_cloudrift, ready_deadline_s=0.5)
    with pytest.raises(TransientCloudError, match=r"not ready after 0.5s .*host_address"):
        provider.create_instance(make_spec())
    assert fake_cloudrift.live_instances() == []
    assert len(fake_cloudrift.calls_to("instances/terminate")) == 1


@pytest.mark.parametrize("cause,error", [("VmBootFailed", CapacityError),
                                         ("DockerImagePullFailed", TerminalCloudError)])
def test_failed_rental_is_terminated_and_classed_by_cause(fake_cloudrift, cause, error):
    fake_cloudrift.fail_rentals(TYPE, cause)
    with pytest.raises(error, match=cause):
        make_provider(fake_cloudrift).create_instance(make_spec())
    assert fake_cloudrift.live_instances() == []


def test_terminate_failing_after_a_failure_raises_leak_error_naming_the_instance(
        fake_cloudrift):
    fake_cloudrift.never_ready(TYPE)
    fake_cloudrift.fail_fraction(1.0, status=500, path_contains="instances/terminate")
    provider = make_provider(fake_cloudrift, ready_deadline_s=0.3)
    with pytest.raises(VMLeakError) as caught:
        provider.create_instance(make_spec())
    leaked = fake_cloudrift.live_instances()
    assert len(leaked) == 1
    message = str(caught.value)
    assert leaked[0].id in message
    assert f"deplodock vm delete cloudrift --instance-id {leaked[0].id}" in message
    fake_cloudrift.clear_faults()
    assert provider.delete_instance({"instance_id": leaked[0].id}) is True


def test_secrets_stay_out_of_logs(fake_cloudrift, caplog):
    caplog.set_level(logging.DEBUG)
    provider = make_provider(fake_cloudrift)
    conn = provider.create_instance(make_spec())
    provider.delete_instance(conn.delete_info)
    from deplodock_dagster.secrets import RedactingFilter

    text = "\n".join(RedactingFilter().filter(r) and r.getMessage() for r in caplog.records)
    assert conn.password and fake_cloudrift.api_key
    assert conn.password not in text and fake_cloudrift.api_key not in text
    assert conn.password not in repr(conn) and "password" not in conn.to_dict()


def test_ssh_keys_list_and_add(fake_cloudrift):
    provider = make_provider(fake_cloudrift)
    key_id = provider.ensure_ssh_key("laptop", "ssh-ed25519 AAAAkey me@host")
    assert provider.ensure_ssh_key("other-name", "ssh-ed25519 AAAAkey other") == key_id
    assert [c.status for c in fake_cloudrift.calls_to("ssh-keys/add")] == [201]


@pytest.mark.parametrize("login,expected", [
    ({"UsernameAndPassword": {"username": "u", "password": "p4ss"}}, ("u", "p4ss")),
    ({"Username": "bob"}, ("bob", None)),
    ({"Username": {"username": "bob"}}, ("bob", None)),
    ({"HiddenPassword": {"username": "eve"}}, ("eve", None)),
    ({"HiddenPassword": None}, ("riftuser", None)),
    ("HiddenPassword", ("riftuser", None)),
    (None, ("riftuser", None)),
])
def test_login_info_forms(login, expected):
    assert read_login(login) == expected


def test_ssh_port_from_mappings():
    assert ssh_port_of([[8000, 1], [22, 57011]]) == 57011
    assert ssh_port_of([]) == 22
    assert ssh_port_of(None) == 22


def test_unreachable_api_is_transient_and_bounded(fake_cloudrift):
    provider = make_provider(fake_cloudrift, api_url="http://127.0.0.1:9")  # nothing listens
    with pytest.raises(TransientCloudError, match="cannot reach .*after 4 attempts|after 4"):
        provider.list_instances()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(login=st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["UsernameAndPassword", "Username", "HiddenPassword",
                                       "username", "password", "x"]), inner, max_size=3),
    max_leaves=8))
def test_read_login_never_raises(login):
    username, password = read_login(login)
    assert isinstance(username, str) and username
