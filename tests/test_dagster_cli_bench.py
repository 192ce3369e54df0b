"""`deplodock bench` from the command line: dry runs, bad input, and --help."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _deplodock(*args, cwd, env=None):
    environ = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "deplodock_dagster.cli", *args], cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=300)


def test_bench_dry_run_plans_two_recipes_in_one_run(tmp_path):
    done = _deplodock("bench", "GLM-4.6-FP8", "Qwen3-Coder-480B-A35B-Instruct-AWQ",
                      "--variants", "8xH200", "--dry-run", "--max-workers", "1",
                      "--recipes-dir", str(REPO / "recipes"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [line for line in done.stdout.splitlines() if line.startswith("run ")]
    assert len(runs) == 1 and runs[0].endswith("succeeded")
    assert "GLM-4.6-FP8, Qwen3-Coder-480B-A35B-Instruct-AWQ" in runs[0]
    assert "dry run: no VM is provisioned" in done.stderr
    assert "group h200x8_" in done.stderr
    assert not (tmp_path / "results").exists()


def test_bench_unknown_recipe_is_a_clear_error(tmp_path):
    done = _deplodock("bench", "no-such-recipe", "--recipes-dir", str(REPO / "recipes"),
                      cwd=tmp_path)
    assert done.returncode == 2
    assert "no recipe named no-such-recipe" in done.stderr
    assert "Traceback" not in done.stderr


def test_bench_help_lists_the_options(tmp_path):
    done = _deplodock("bench", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for flag in ("--variants", "--force", "--dry-run", "--max-workers", "--submit"):
        assert flag in done.stdout
