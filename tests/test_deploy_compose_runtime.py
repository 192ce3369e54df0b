"""The docker-compose runtime's verdicts, on a host answering like docker and curl would.

No Docker engine runs here, so the host is a DryRunHost with canned answers (exit codes and
output in the shape docker compose and curl give), and the deploy is not a dry run: the
runtime must read those answers and decide.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from deplodock_dagster.deploy import DeployParams, deploy, teardown
from deplodock_dagster.errors import DeployError
from deplodock_dagster.hosts import DryRunHost
from deplodock_dagster.recipe import RECIPES_DIR, resolve_variant

DIR = "/srv/deplodock"
COMPOSE = (f"docker compose --project-name deplodock --project-directory {DIR} "
           f"--file {DIR}/docker-compose.yml")
REPLY = '{"choices": [{"message": {"role": "assistant", "content": "Hello!"}}]}'


@pytest.fixture
def recipe():
    return resolve_variant(RECIPES_DIR / "GLM-4.6-FP8", "8xH200")[0]


def _params(recipe, files=None, **outputs) -> DeployParams:
    canned = {"curl -sS": REPLY, **{k.replace("COMPOSE", COMPOSE): v for k, v in outputs.items()}}
    host = DryRunHost(name="ubuntu@gpu-1:22", outputs=canned, files=files)
    host.address = "203.0.113.7"
    return DeployParams(recipe=recipe, host=host, runtime="docker-compose", deploy_dir=DIR,
                        model_dir="/hf_models", hf_token="hf_ComposeTok3n99",
                        health_timeout_s=1)


def test_healthy_engine_with_a_reply_is_deployed(recipe):
    params = _params(recipe)
    outcome = deploy(params)
    assert outcome.endpoint == "http://203.0.113.7:8000/v1"
    assert outcome.runtime == "docker-compose"
    assert outcome.handle["compose_file"] == f"{DIR}/docker-compose.yml"
    assert "engine_0:" in outcome.deploy_spec
    assert "hf_ComposeTok3n99" not in outcome.deploy_spec
    env_write = [w for w in params.host.writes if w.path == f"{DIR}/.env"]
    assert env_write and env_write[0].mode == 0o600


def test_failed_up_reports_compose_output_and_engine_logs(recipe):
    params = _params(recipe, **{
        "COMPOSE up": (1, "container deplodock-engine_0-1 is unhealthy"),
        "COMPOSE logs": "engine_0-1  | torch.OutOfMemoryError: CUDA out of memory",
    })
    with pytest.raises(DeployError) as caught:
        deploy(params)
    message = str(caught.value)
    assert "docker compose up failed (exit 1)" in message
    assert "is unhealthy" in message
    assert "CUDA out of memory" in caught.value.engine_log_tail
    # deploy() stopped what it started
    assert params.host.commands[-1] == f"{COMPOSE} down --remove-orphans"


def test_empty_smoke_reply_fails_the_deploy(recipe):
    params = _params(recipe, **{"curl -sS": '{"choices": [{"message": {"content": ""}}]}'})
    with pytest.raises(DeployError, match="smoke test chat completion returned an empty reply"):
        deploy(params)


def test_engine_never_healthy_times_out_with_a_clear_message(recipe):
    params = _params(recipe, **{"curl -sf": (7, "")})
    with pytest.raises(DeployError, match="did not become healthy within 1 s"):
        deploy(params)


def test_model_already_cached_is_not_downloaded(recipe):
    params = _params(recipe, files={"/hf_models/zai-org/GLM-4.6-FP8/config.json": "{}"})
    deploy(params)
    assert not any("download" in command for command in params.host.commands)


def test_failed_download_names_the_model_and_the_token_flag(recipe):
    params = _params(recipe, **{"docker run --rm --env-file": (1, "401 Unauthorized")})
    with pytest.raises(DeployError) as caught:
        deploy(params)
    assert "could not download model zai-org/GLM-4.6-FP8" in str(caught.value)
    assert "--hf-token" in str(caught.value)


def test_teardown_failure_says_how_to_stop_by_hand(recipe):
    params = _params(recipe, **{"COMPOSE down": (1, "Cannot connect to the Docker daemon")})
    with pytest.raises(DeployError, match="docker compose --project-name deplodock down"):
        teardown(params)


def test_pinned_gpus_reach_the_compose_file(recipe):
    # A 4-GPU task on an 8-GPU VM, pinned to the second half by the planner.
    params = _params(_on_gpus(recipe, 4))
    params.gpu_device_ids = (4, 5, 6, 7)
    outcome = deploy(params)
    service = yaml.safe_load(outcome.deploy_spec)["services"]["engine_0"]
    devices = service["deploy"]["resources"]["reservations"]["devices"][0]
    assert devices["device_ids"] == ["4", "5", "6", "7"]


def _on_gpus(recipe, gpus: int):
    """The recipe on `gpus` GPUs (tensor parallel over all of them)."""
    return replace(recipe, gpu_count=gpus,
                   engine=replace(recipe.engine, tensor_parallel_size=gpus))
