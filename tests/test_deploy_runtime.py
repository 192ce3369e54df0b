"""The deploy layer without a real engine: env file, bootstrap, process start and stop.

Processes here are real (bash, sleep, a python without vLLM) on this machine through
LocalHost; checks that need a machine with Docker or missing tools use a dry-run host with
canned answers. The real engine is exercised in test_e2e_ssh_vllm.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from deplodock_dagster.deploy import DeployParams, run_deploy, teardown
from deplodock_dagster.deploy.bootstrap import bootstrap
from deplodock_dagster.deploy.runtimes import get_runtime
from deplodock_dagster.deploy.runtimes.common import (
    check_smoke_reply,
    with_resolved_dirs,
    write_env_file,
)
from deplodock_dagster.deploy.runtimes.process import _LAUNCH_SCRIPT
from deplodock_dagster.errors import ConfigError, DeployError
from deplodock_dagster.hosts import DryRunHost, LocalHost
from deplodock_dagster.recipe import RECIPES_DIR, resolve_variant
from tests.fixtures.sshd import free_port

CHECK = "sh -c 'command -v \"$1\" >/dev/null 2>&1' deplodock-check"


@pytest.fixture
def tiny():
    return resolve_variant(RECIPES_DIR / "tiny-cpu", "cpu")[0]


def _alive(pid: int) -> bool:
    """True if `pid` runs and is not a zombie (nobody may reap a reparented process here)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_env_file_is_0600_and_holds_the_token(tmp_path, tiny):
    params = DeployParams(recipe=tiny, host=LocalHost(), hf_token="hf_abcDEF123_x")
    path = write_env_file(params, str(tmp_path))
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    text = open(path).read()
    assert "HF_TOKEN=hf_abcDEF123_x\n" in text
    assert "HUGGING_FACE_HUB_TOKEN=hf_abcDEF123_x\n" in text


def test_token_with_shell_characters_is_refused(tmp_path, tiny):
    params = DeployParams(recipe=tiny, host=LocalHost(), hf_token="hf_x$(touch /tmp/pwn)")
    with pytest.raises(ConfigError, match="HF_TOKEN"):
        write_env_file(params, str(tmp_path))
    assert not (tmp_path / ".env").exists()


def test_deploy_dir_tilde_is_resolved_on_the_host(tiny):
    params = DeployParams(recipe=tiny, host=LocalHost(), deploy_dir="~/deplodock-x")
    assert with_resolved_dirs(params).deploy_dir == os.path.expanduser("~/deplodock-x")


def test_unknown_runtime_is_a_config_error(tiny):
    with pytest.raises(ConfigError, match="docker-compose, process"):
        get_runtime("kubernetes")


def test_bootstrap_names_host_missing_tools_and_the_flag(tiny):
    host = DryRunHost(name="ubuntu@gpu-1:22", outputs={
        f"{CHECK} docker": (1, ""), f"{CHECK} nvidia-ctk": (1, ""),
        "docker compose version": (127, ""),
    })
    params = DeployParams(recipe=tiny, host=host, runtime="docker-compose",
                          deploy_dir="/srv/deplodock")
    with pytest.raises(DeployError) as caught:
        bootstrap(params)
    message = str(caught.value)
    assert message.startswith("ubuntu@gpu-1:22: missing docker, docker compose plugin, "
                              "NVIDIA container toolkit")
    assert "--install-missing" in message
    assert not any("apt-get" in command for command in host.commands)


def test_bootstrap_installs_with_apt_only_when_asked(tiny):
    host = DryRunHost(name="gpu-1", outputs={
        f"{CHECK} docker": (1, ""), "id -u": "1000",
    })
    params = DeployParams(recipe=tiny, host=host, runtime="docker-compose",
                          deploy_dir="/srv/deplodock", install_missing=True)
    with pytest.raises(DeployError, match="missing docker"):
        bootstrap(params)  # the canned check still says missing after the install
    installs = [c for c in host.commands if "apt-get" in c]
    assert installs == [
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update",
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io",
    ]


def test_process_bootstrap_needs_vllm_in_the_engine_python(tmp_path, tiny):
    params = DeployParams(recipe=tiny, host=LocalHost(), runtime="process",
                          deploy_dir=str(tmp_path / "d"), engine_python=sys.executable)
    with pytest.raises(DeployError) as caught:
        bootstrap(params)
    assert f"vLLM in {sys.executable}" in str(caught.value)
    assert "--engine-python" in str(caught.value)
    assert (tmp_path / "d").is_dir()


def test_engine_that_cannot_start_fails_fast_with_its_log(tmp_path, tiny):
    # A python without vLLM: the engine process exits at once, as a broken venv would.
    model_dir = tmp_path / "models"
    (model_dir / tiny.model_name).mkdir(parents=True)
    (model_dir / tiny.model_name / "config.json").write_text("{}")
    params = DeployParams(
        recipe=tiny, host=LocalHost(), runtime="process", model_dir=str(model_dir),
        deploy_dir=str(tmp_path / "deploy"), engine_python=sys.executable,
        port=free_port(), health_timeout_s=60, hf_token="hf_processTOKEN42",
    )
    started = time.monotonic()
    with pytest.raises(DeployError) as caught:
        run_deploy(params)  # without the bootstrap, which would refuse this python first
    assert time.monotonic() - started < 30
    assert "exited while starting" in str(caught.value)
    assert "No module named 'vllm'" in caught.value.engine_log_tail
    pid = int((tmp_path / "deploy" / "engine.pid").read_text())
    assert not _alive(pid)
    assert teardown(params) is False  # nothing was left to stop
    assert not (tmp_path / "deploy" / "engine.pid").exists()


def test_missing_model_and_failed_download_is_a_clear_error(tmp_path, tiny):
    params = DeployParams(
        recipe=tiny, host=LocalHost(), runtime="process", model_dir=str(tmp_path / "m"),
        deploy_dir=str(tmp_path / "deploy"), engine_python=sys.executable, port=free_port(),
    )
    with pytest.raises(DeployError) as caught:
        run_deploy(params)
    message = str(caught.value)
    assert f"could not download model {tiny.model_name}" in message
    assert f"{tmp_path}/m/{tiny.model_name}" in message


def test_teardown_stops_the_whole_process_group(tmp_path, tiny):
    deploy_dir = tmp_path / "deploy"
    deploy_dir.mkdir()
    host = LocalHost()
    # Start a stand-in engine with a child, the way the process runtime starts the engine.
    result = host.run(["bash", "-c", _LAUNCH_SCRIPT, "launch", str(deploy_dir),
                       str(deploy_dir / ".env"), str(deploy_dir / "engine.log"),
                       str(deploy_dir / "engine.pid"),
                       "bash", "-c", "sleep 300 & echo child $!; wait"])
    leader = int(result.stdout.split()[-1])
    deadline = time.monotonic() + 10
    while "child" not in (deploy_dir / "engine.log").read_text():
        assert time.monotonic() < deadline, "stand-in engine never started its child"
        time.sleep(0.1)
    child = int((deploy_dir / "engine.log").read_text().split()[1])
    assert _alive(leader) and _alive(child)

    params = DeployParams(recipe=tiny, host=host, runtime="process",
                          deploy_dir=str(deploy_dir))
    assert teardown(params) is True
    assert not _alive(leader) and not _alive(child)
    assert not (deploy_dir / "engine.pid").exists()
    assert teardown(params) is False  # idempotent: nothing left to stop


def test_port_in_use_is_refused_before_starting(tmp_path, tiny):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port),
                               "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"]
                             ).returncode != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        params = DeployParams(recipe=tiny, host=LocalHost(), runtime="process",
                              deploy_dir=str(tmp_path), port=port)
        with pytest.raises(DeployError, match=f"port {port} already serves HTTP"):
            run_deploy(params)
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("body, ok", [
    ('{"choices": [{"message": {"content": "hello"}}]}', True),
    ('{"choices": [{"message": {"content": "  "}}]}', False),
    ('{"error": {"message": "model not found"}}', False),
    ("", False),
])
def test_smoke_reply_must_be_non_empty(body, ok):
    if ok:
        assert check_smoke_reply("h", body) == "hello"
    else:
        with pytest.raises(DeployError, match="smoke test"):
            check_smoke_reply("h", body)


def test_pinned_gpus_reach_the_process_engine_as_cuda_visible_devices(tiny):
    host = DryRunHost(name="gpu-1")
    params = DeployParams(recipe=tiny, host=host, runtime="process", deploy_dir="/srv/d",
                          gpu_device_ids=(2, 3), dry_run=True)
    outcome = run_deploy(params)
    assert "CUDA_VISIBLE_DEVICES=2,3" in outcome.deploy_spec
    launch = [c for c in host.commands if "deplodock-launch" in c]
    assert len(launch) == 1 and "CUDA_VISIBLE_DEVICES=2,3" in launch[0]
