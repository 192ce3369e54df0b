"""`deplodock deploy cloud` over the fake CloudRift: a rented "VM" (a loopback sshd) gets the
tiny CPU recipe served by a real vLLM, passes the smoke test, and is deleted at the end."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deplodock_dagster.cli import main
from tests.fixtures.sshd import free_port

pytestmark = [pytest.mark.vllm, pytest.mark.sshd]

REPO = Path(__file__).resolve().parent.parent


def test_deploy_cloud_on_fake_cloudrift_with_real_vllm(
        cloud_env, fake_cloudrift, monkeypatch, tmp_path, capsys, vllm_lock, engine_python,
        model_root):
    # The tiny CPU recipe, with a variant whose GPU only CloudRift offers.
    recipe = yaml.safe_load((REPO / "recipes" / "tiny-cpu" / "recipe.yaml").read_text())
    recipe["variants"] = {"1xL40S": {"gpu": "NVIDIA L40S", "gpu_count": 1}}
    folder = tmp_path / "tiny-on-cloud"
    folder.mkdir()
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))

    for name, value in cloud_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DEPLODOCK_FIXED_HOSTS", raising=False)
    monkeypatch.setenv("DEPLODOCK_ENGINE_PYTHON", str(engine_python))
    monkeypatch.setenv("DEPLODOCK_MODEL_DIR", str(model_root))
    monkeypatch.setenv("DEPLODOCK_ENGINE_PORT", str(free_port()))
    monkeypatch.setenv("DEPLODOCK_DEPLOY_DIR", str(tmp_path / "deploy"))
    monkeypatch.setenv("DEPLODOCK_HEALTH_TIMEOUT_S", "600")

    code = main(["deploy", "cloud", "--recipe", str(folder), "--variant", "1xL40S"])
    out, err = capsys.readouterr()

    assert code == 0, out + err
    (rent,) = fake_cloudrift.calls_to("instances/rent")
    assert rent.body["data"]["selector"]["ByInstanceTypeAndLocation"] == {
        "instance_type": "l40s-24c-kn.1"}
    (instance,) = fake_cloudrift.instances.values()
    assert f"VM {instance.name} (cloudrift {instance.id}) at {instance.vm.address}" in out
    assert "smoke test passed" in out
    assert f"VM {instance.name} deleted" in out
    assert fake_cloudrift.live_instances() == []
    assert instance.vm.process is None  # the VM's sshd is gone with it
    assert fake_cloudrift.api_key not in out + err and instance.password not in out + err
