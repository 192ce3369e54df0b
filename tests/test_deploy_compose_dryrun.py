"""`deplodock deploy ssh --dry-run` for the docker-compose runtime: the exact command sequence.

No Docker engine runs here, so the compose runtime is pinned by its transcript on a dry-run
host: every command and file in order, as the CLI prints it. A change to the sequence must
change the golden list below on purpose.
"""

from __future__ import annotations

import textwrap

import pytest
import yaml

from deplodock_dagster.cli import main

TOKEN = "hf_GOLDENsecret42abc"
HOME = "/home/ubuntu/deplodock"
COMPOSE = (
    f"docker compose --project-name deplodock --project-directory {HOME} "
    f"--file {HOME}/docker-compose.yml"
)
SMOKE_BODY = (
    '{"model": "acme/chat-model", "messages": [{"role": "user", "content": '
    '"Say hello in one word."}], "max_tokens": 8, "temperature": 0}'
)

GOLDEN_DEPLOY = [
    "$ sh -c 'printf \"%s\" \"$HOME\"'",
    f"$ mkdir -p {HOME}",
    "$ sh -c 'command -v \"$1\" >/dev/null 2>&1' deplodock-check curl",
    "$ sh -c 'command -v \"$1\" >/dev/null 2>&1' deplodock-check docker",
    "$ docker compose version",
    "$ sh -c 'command -v \"$1\" >/dev/null 2>&1' deplodock-check nvidia-ctk",
    f"write {HOME}/docker-compose.yml (0644)",
    f"write {HOME}/nginx.conf (0644)",
    f"write {HOME}/.env (0600)",
    f"$ {COMPOSE} pull",
    f"$ docker run --rm --env-file {HOME}/.env --env HF_HOME=/hf_models "
    "--volume /hf_models:/hf_models --entrypoint bash vllm/vllm-openai:v0.11.0 "
    "-c 'if command -v hf >/dev/null 2>&1; then exec hf download \"$@\"; fi; "
    "exec huggingface-cli download \"$@\"' deplodock-download acme/chat-model "
    "--local-dir /hf_models/acme/chat-model",
    f"$ {COMPOSE} down --remove-orphans",
    f"$ {COMPOSE} up --detach --wait --wait-timeout 1800",
    "$ curl -sf -m 5 -o /dev/null http://127.0.0.1:8000/health",
    "$ curl -sS -m 120 -H 'Content-Type: application/json' -d "
    f"'{SMOKE_BODY}' http://127.0.0.1:8000/v1/chat/completions",
]

GOLDEN_BENCH = [
    f"$ rm -rf {HOME}/bench",
    f"$ mkdir -p {HOME}/bench",
    f"$ docker run --rm --network host --env-file {HOME}/.env --volume /hf_models:/hf_models "
    f"--volume {HOME}:{HOME} --entrypoint vllm vllm/vllm-openai:v0.11.0 bench serve "
    "--backend openai-chat --endpoint /v1/chat/completions --base-url http://127.0.0.1:8000 "
    "--model acme/chat-model --tokenizer /hf_models/acme/chat-model --dataset-name random "
    "--random-input-len 1000 --random-output-len 500 --num-prompts 256 --max-concurrency 64 "
    "--percentile-metrics ttft,tpot,itl,e2el --save-result --result-dir "
    f"{HOME}/bench --result-filename result.json --ignore-eos",
    f"$ {COMPOSE} down --remove-orphans",
]

RECIPE = textwrap.dedent("""\
    model:
      name: acme/chat-model
    backend:
      vllm:
        image: vllm/vllm-openai:v0.11.0
        tensor_parallel_size: {tp}
        max_model_len: 8192
    benchmark:
      max_concurrency: 64
      num_prompts: 256
      random_input_len: 1000
      random_output_len: 500
    variants:
      8xH100:
        gpu: H100
        gpu_count: 8
    """)


def _recipe(tmp_path, tp: int = 4):
    folder = tmp_path / "chat-model"
    folder.mkdir()
    (folder / "recipe.yaml").write_text(RECIPE.format(tp=tp))
    return folder


def _dry_run(capsys, *args: str) -> tuple[list[str], str]:
    code = main(["deploy", "ssh", "--server", "ubuntu@gpu-box.example", "--dry-run",
                 "--hf-token", TOKEN, *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    steps = [line for line in captured.out.splitlines() if line.startswith(("$ ", "write "))]
    return steps, captured.out + captured.err


def test_compose_dry_run_prints_the_exact_sequence(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DEPLODOCK_MODEL_DIR", raising=False)
    monkeypatch.delenv("DEPLODOCK_DEPLOY_DIR", raising=False)
    steps, _ = _dry_run(capsys, "--recipe", str(_recipe(tmp_path)))
    assert steps == GOLDEN_DEPLOY


def test_compose_dry_run_with_bench_adds_the_benchmark_and_teardown(tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.delenv("DEPLODOCK_MODEL_DIR", raising=False)
    monkeypatch.delenv("DEPLODOCK_DEPLOY_DIR", raising=False)
    steps, _ = _dry_run(capsys, "--recipe", str(_recipe(tmp_path)), "--bench")
    assert steps == GOLDEN_DEPLOY + GOLDEN_BENCH


def test_compose_dry_run_teardown_is_compose_down(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DEPLODOCK_DEPLOY_DIR", raising=False)
    steps, _ = _dry_run(capsys, "--recipe", str(_recipe(tmp_path)), "--teardown")
    assert steps == [GOLDEN_DEPLOY[0], f"$ {COMPOSE} down --remove-orphans"]


def test_dry_run_shows_files_but_never_the_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DEPLODOCK_MODEL_DIR", raising=False)
    _, output = _dry_run(capsys, "--recipe", str(_recipe(tmp_path)), "--bench")
    assert TOKEN not in output
    assert "HF_TOKEN=***" in output
    # The compose file shown is the one written: two engines behind the balancer.
    compose_text = output.split("docker-compose.yml (0644)\n", 1)[1].split("\nwrite ", 1)[0]
    services = yaml.safe_load(textwrap.dedent(compose_text))["services"]
    assert sorted(services) == ["balancer", "engine_0", "engine_1"]


def test_single_instance_writes_no_nginx_conf(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DEPLODOCK_DEPLOY_DIR", raising=False)
    steps, _ = _dry_run(capsys, "--recipe", str(_recipe(tmp_path, tp=8)))
    assert not any("nginx.conf" in step for step in steps)
    assert f"write {HOME}/docker-compose.yml (0644)" in steps


@pytest.mark.parametrize("server", ["gpu-box", "@gpu-box", "ubuntu@"])
def test_bad_server_is_a_clear_error(tmp_path, capsys, server):
    code = main(["deploy", "ssh", "--server", server, "--dry-run",
                 "--recipe", str(_recipe(tmp_path))])
    assert code == 2
    assert "USER@HOST" in capsys.readouterr().err
