"""`deplodock vm create|delete|list` against the fake clouds, through the real CLI entry."""

from __future__ import annotations

import json

import pytest

from deplodock_dagster.cli import main


@pytest.fixture
def env(cloud_env, monkeypatch):
    for name, value in cloud_env.items():
        monkeypatch.setenv(name, value)
    return cloud_env


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_list_delete_cloudrift(env, fake_cloudrift, capsys):
    code, out, _ = run(capsys, "vm", "create", "cloudrift", "--gpu", "rtx4090")
    assert code == 0, out
    (instance,) = fake_cloudrift.live_instances()
    assert f"ssh -p {instance.vm.port} root@{instance.vm.address}" in out
    assert f"deplodock vm delete cloudrift --instance-id {instance.id}" in out
    assert instance.password not in out

    code, out, _ = run(capsys, "vm", "list", "--json")
    listed = json.loads(out)
    assert [vm["instance_id"] for vm in listed] == [instance.id]

    code, out, _ = run(capsys, "vm", "delete", "cloudrift", "--name", instance.name)
    assert code == 0 and "deleted" in out
    assert fake_cloudrift.live_instances() == []
    code, out, _ = run(capsys, "vm", "delete", "cloudrift", "--instance-id", instance.id)
    assert code == 0 and "already gone" in out


def test_create_and_delete_gcp_by_instance_type(env, fake_gce, capsys):
    code, out, _ = run(capsys, "vm", "create", "gcp", "--instance-type", "a3-highgpu-8g",
                       "--name", "my-bench-box", "--provisioning-model", "SPOT")
    assert code == 0, out
    assert [i["name"] for i in fake_gce.live_instances()] == ["my-bench-box"]
    assert fake_gce.inserted_bodies[0]["scheduling"]["provisioningModel"] == "SPOT"
    assert "deplodock vm delete gcp --name my-bench-box --zone us-central1-a" in out
    code, out, _ = run(capsys, "vm", "delete", "gcp", "--name", "my-bench-box")
    assert code == 0 and "deleted" in out and fake_gce.live_instances() == []


def test_dry_run_prints_calls_with_the_key_redacted_and_sends_nothing(
        env, fake_cloudrift, fake_gce, capsys):
    code, out, _ = run(capsys, "vm", "create", "cloudrift", "--gpu", "h200", "--gpu-count", "8",
                       "--dry-run")
    assert code == 0
    assert f"POST {fake_cloudrift.base_url}/api/v1/instances/rent" in out
    assert '"instance_type": "h200-8-generic.8"' in out
    assert "X-API-Key: ***" in out and fake_cloudrift.api_key not in out
    code, out, _ = run(capsys, "vm", "create", "gcp", "--gpu", "h100", "--gpu-count", "8",
                       "--dry-run")
    assert "/compute/v1/projects/fake-project/zones/us-central1-a/instances" in out
    code, out, _ = run(capsys, "vm", "delete", "cloudrift", "--instance-id", "x-1", "--dry-run")
    assert "instances/terminate" in out and '"x-1"' in out
    assert fake_cloudrift.calls == [] and fake_gce.calls == []


def test_wrong_api_key_is_one_clear_line(env, fake_cloudrift, capsys, monkeypatch):
    monkeypatch.setenv("CLOUDRIFT_API_KEY", "not-the-key-42")
    code, out, err = run(capsys, "vm", "create", "cloudrift", "--gpu", "rtx4090")
    assert code == 1
    assert "check CLOUDRIFT_API_KEY" in err and "Traceback" not in err
    assert "not-the-key-42" not in err + out
    assert len(fake_cloudrift.calls) == 1


def test_unknown_gpu_and_missing_zone_are_clear(env, capsys, monkeypatch):
    code, _, err = run(capsys, "vm", "create", "cloudrift", "--gpu", "h100")
    assert code == 2 and "offers no NVIDIA H100 80GB" in err
    monkeypatch.delenv("GCP_ZONE")
    code, _, err = run(capsys, "vm", "delete", "gcp", "--name", "x")
    assert code == 2 and "no managed GCP VM named 'x' found in any zone" in err


def test_delete_gcp_by_instance_id_finds_the_zone(env, fake_gce, capsys, monkeypatch):
    code, out, _ = run(capsys, "vm", "create", "gcp", "--instance-type", "a3-highgpu-8g",
                       "--name", "zone-less", "--zone", "us-east5-a")
    assert code == 0, out
    monkeypatch.delenv("GCP_ZONE")
    code, out, _ = run(capsys, "vm", "delete", "gcp", "--instance-id", "zone-less")
    assert code == 0 and "deleted" in out and fake_gce.live_instances() == []


def test_keys_add_and_list(env, fake_cloudrift, capsys, ssh_client_key):
    public = f"{ssh_client_key}.pub"
    code, out, _ = run(capsys, "vm", "keys", "cloudrift", "--add", public, "--name", "ci")
    assert code == 0 and "id key-" in out
    code, out, _ = run(capsys, "vm", "keys", "cloudrift", "--add", public)  # already there
    assert len(fake_cloudrift.ssh_keys) == 1
    code, out, _ = run(capsys, "vm", "keys", "cloudrift")
    assert "ci  ssh-ed25519" in out
    code, _, err = run(capsys, "vm", "keys", "cloudrift", "--add", str(ssh_client_key))
    assert code == 2 and "not an OpenSSH public key" in err
