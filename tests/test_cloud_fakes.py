"""The fake cloud APIs keep the reference contracts that clients trip on."""

from __future__ import annotations

import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from deplodock_dagster.vm.naming import (
    MAX_NAME_LEN,
    is_valid_name,
    label_value,
    run_name_prefix,
    vm_labels,
    vm_name,
)


def cr_call(fake, path, data, version="~upcoming", key=None):
    return requests.post(f"{fake.base_url}/api/v1/{path}",
                         json={"version": version, "data": data},
                         headers={"X-API-Key": key or fake.api_key}, timeout=10)


def test_fake_cloudrift_envelope_status_codes_and_plain_text_errors(fake_cloudrift):
    answer = cr_call(fake_cloudrift, "ssh-keys/add", {"name": "k", "public_key": "ssh-ed25519 A"})
    assert answer.status_code == 201 and answer.json()["data"]["public_key"]["id"]
    answer = cr_call(fake_cloudrift, "ssh-keys/list", {})
    assert answer.status_code == 200 and answer.json()["version"] == "~upcoming"
    answer = cr_call(fake_cloudrift, "instances/list", {}, version="yesterday")
    assert (answer.status_code, answer.text) == (400, "unsupported version")
    answer = cr_call(fake_cloudrift, "instances/list", {}, key="bad")
    assert answer.status_code == 401 and answer.headers["Content-Type"].startswith("text/plain")


def test_fake_cloudrift_lifecycle(fake_cloudrift):
    rent = {"selector": {"ByInstanceTypeAndLocation": {"instance_type": "rtx49-7c-kn.1"}},
            "config": {"VirtualMachine": {"ssh_key": {"PublicKeys": ["ssh-ed25519 A"]}}},
            "ports": ["22", "8000"], "with_public_ip": True}
    (instance_id,) = cr_call(fake_cloudrift, "instances/rent", rent).json()["data"][
        "instance_ids"]

    def poll(with_info=True):
        data = {"selector": {"ById": [instance_id]},
                "mask": {"with_connection_info": with_info}}
        return cr_call(fake_cloudrift, "instances/list", data).json()["data"]["instances"]

    assert poll() == []  # a fresh id is not listed at first
    assert poll()[0]["status"] == "Initializing"
    active = poll()[0]
    assert active["status"] == "Active" and active["host_address"] is None
    assert active["port_mappings"] is None and active["virtual_machines"][0]["ready"] is False
    poll()
    connected = poll()[0]
    assert connected["host_address"] and connected["port_mappings"][0][0] == 22
    assert connected["virtual_machines"][0]["ready"] is False
    assert poll()[0]["virtual_machines"][0]["ready"] is True
    assert poll(with_info=False)[0]["host_address"] is None

    unknown = {"selector": {"ById": ["nope"]}}
    assert cr_call(fake_cloudrift, "instances/list", unknown).json()["data"]["instances"] == []
    terminated = cr_call(fake_cloudrift, "instances/terminate",
                         {"selector": {"ById": [instance_id, "nope"]}}).json()["data"]
    assert [t["id"] for t in terminated["terminated"]] == [instance_id]
    assert poll()[0]["status"] == "Deactivating"
    assert poll()[0]["status"] == "Inactive"


def test_fake_gce_404_shape_and_empty_list(fake_gce):
    base = f"{fake_gce.endpoint}projects/fake-project/zones/us-central1-a/instances"
    missing = requests.get(f"{base}/ghost", timeout=10)
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == 404 and error["errors"][0]["reason"] == "notFound"
    assert "projects/fake-project/zones/us-central1-a/instances/ghost" in error["message"]
    listing = requests.get(base, timeout=10).json()
    assert listing["kind"] == "compute#instanceList" and "items" not in listing


@settings(max_examples=200, deadline=None, derandomize=True)
@given(run_id=st.text(max_size=80), group=st.text(max_size=120))
def test_vm_names_and_labels_are_always_valid(run_id, group):
    name = vm_name(run_id, group)
    assert is_valid_name(name) and len(name) <= MAX_NAME_LEN
    assert name.startswith(run_name_prefix(run_id))
    for key, value in vm_labels(run_id, group).items():
        assert len(value) <= 63 and value == label_value(value)
        assert all(c.islower() or c.isdigit() or c in "-_" for c in value)


def test_uuid_run_ids_survive_as_labels():
    run_id = "0f3c2a9e-1111-4222-8333-444455556666"
    assert label_value(run_id) == run_id
    assert vm_name(run_id, "H200 x8", suffix="ab12") == "deplodock-0f3c2a9e-h200-x8-ab12"
