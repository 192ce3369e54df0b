"""`deplodock deploy local|ssh|cloud` flags and messages (no engine started here)."""

from __future__ import annotations

import sys

import pytest

from deplodock_dagster.cli import main
from deplodock_dagster.recipe import RECIPES_DIR

TINY = str(RECIPES_DIR / "tiny-cpu")


def test_help_lists_targets_and_flags(capsys):
    with pytest.raises(SystemExit):
        main(["deploy", "ssh", "--help"])
    out = capsys.readouterr().out
    for flag in ("--recipe", "--variant", "--hf-token", "--model-dir", "--teardown",
                 "--dry-run", "--server", "--ssh-key", "--ssh-port", "--runtime",
                 "--engine-python", "--bench", "--results-dir"):
        assert flag in out
    with pytest.raises(SystemExit):
        main(["deploy", "--help"])
    assert "cloud" in capsys.readouterr().out


def test_local_teardown_with_nothing_running(tmp_path, capsys):
    code = main(["deploy", "local", "--recipe", TINY, "--deploy-dir", str(tmp_path),
                 "--teardown"])
    assert code == 0
    assert "nothing was running" in capsys.readouterr().out


def test_local_deploy_without_vllm_is_one_clear_error(tmp_path, capsys):
    code = main(["deploy", "local", "--recipe", TINY, "--deploy-dir", str(tmp_path),
                 "--engine-python", sys.executable])
    err = capsys.readouterr().err
    assert code == 1
    assert f"deplodock: error: local: missing vLLM in {sys.executable}" in err
    assert "Traceback" not in err


def test_process_dry_run_shows_the_launch_without_the_token(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_CliEnvToken5555")
    code = main(["deploy", "local", "--recipe", TINY, "--deploy-dir", str(tmp_path),
                 "--model-dir", "/models", "--port", "8123", "--dry-run",
                 "--engine-python", "/opt/venv/bin/python"])
    captured = capsys.readouterr()
    assert code == 0
    assert "hf_CliEnvToken5555" not in captured.out + captured.err
    launch = [line for line in captured.out.splitlines() if "deplodock-launch" in line]
    assert len(launch) == 1
    assert launch[0].endswith(
        "env VLLM_CPU_KVCACHE_SPACE=1 VLLM_TARGET_DEVICE=cpu "
        "/opt/venv/bin/python -m vllm.entrypoints.openai.api_server "
        "--model /models/deplodock/tiny-llama --served-model-name deplodock/tiny-llama "
        "--host 0.0.0.0 --port 8123 --max-model-len 512"
    )
    assert f"write {tmp_path}/.env (0600)" in captured.out


def test_unknown_variant_names_the_choices(capsys):
    code = main(["deploy", "local", "--recipe", TINY, "--variant", "8xH200", "--dry-run"])
    assert code == 2
    assert "cpu" in capsys.readouterr().err
