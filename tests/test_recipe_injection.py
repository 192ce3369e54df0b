"""Shell-injection payloads in every recipe field that reaches a host never run.

Each payload goes into each field. Either the recipe is refused at load time (naming the
field), or what loads is turned into the engine's argv and environment the way the deploy
does (engine_flags.process_argv, shlex.join) and run through a real bash: the canary file
must never appear, and the words must come back exactly as they went in.
"""

from __future__ import annotations

import shlex
import subprocess

import pytest
import yaml

from deplodock_dagster.errors import RecipeError
from deplodock_dagster.recipe import load_recipe
from deplodock_dagster.recipe.engine_flags import process_argv
from tests.recipe_helpers import base, write_recipe

PAYLOADS = [
    "$(touch CANARY)",
    "`touch CANARY`",
    "; touch CANARY",
    "x && touch CANARY",
    "x || touch CANARY",
    "x | touch CANARY",
    "x\ntouch CANARY",
    "' ; touch CANARY ; '",
    '" ; touch CANARY ; "',
    "${IFS}touch${IFS}CANARY",
    "x;touch${IFS}CANARY",
    ">CANARY",
    "--flag=$(touch CANARY)",
    "\\$(touch CANARY)",
    "touch CANARY",  # harmless unless something splits and runs it
    "--x={\"a\":\"$(touch CANARY)\"}",
    "org/model;touch CANARY",
    "vllm/vllm-openai:v1$(touch CANARY)",
]


def _put(data: dict, field: str, payload: str) -> dict:
    if field == "model.name":
        data["model"]["name"] = payload
    elif field == "image":
        data["backend"]["vllm"]["image"] = payload
    elif field == "extra_args string":
        data["backend"]["vllm"]["extra_args"] = f"--enforce-eager {payload}"
    elif field == "extra_args item":
        data["backend"]["vllm"]["extra_args"] = ["--enforce-eager", payload]
    elif field == "benchmark extra_args":
        data["benchmark"]["extra_args"] = [payload]
    elif field == "env value":
        data["extra_env"] = {"SOME_SETTING": payload}
    elif field == "env name":
        data["extra_env"] = {payload: "1"}
    elif field == "variant name":
        data["variants"] = {payload: data["variants"]["2xH100"]}
    elif field == "gpu":
        data["variants"]["2xH100"]["gpu"] = payload
    elif field == "runtime":
        data["runtime"] = payload
    elif field == "matrix value":
        data["matrices"] = [{"backend.vllm.extra_args": [[payload]]}]
    return data


FIELDS = ["model.name", "image", "extra_args string", "extra_args item", "benchmark extra_args",
          "env value", "env name", "variant name", "gpu", "runtime", "matrix value"]


@pytest.mark.parametrize("field", FIELDS)
def test_injection_payloads_never_run(tmp_path, field):
    refused, loaded = 0, []
    for index, payload in enumerate(PAYLOADS):
        file = write_recipe(tmp_path, yaml.safe_dump(_put(base(), field, payload)),
                            name=f"r{index}")
        try:
            recipe = load_recipe(file.parent)
        except RecipeError as error:
            assert error.path == str(file)
            refused += 1
            continue
        loaded.append(payload)
        for task in recipe.tasks:
            argv = process_argv(
                task.engine, "python3", model_path=f"/models/{task.model_name}",
                served_model_name=task.model_name, host="127.0.0.1", port=8000,
            )
            words = [*(f"{name}={value}" for name, value in task.engine.extra_env),
                     task.engine.image, task.variant, task.gpu_name,
                     *task.benchmark.extra_args, *argv]
            run_dir = tmp_path / f"run{index}"
            run_dir.mkdir()
            result = subprocess.run(
                ["bash", "-c", "printf '%s\\n' " + shlex.join(words)],
                cwd=run_dir, capture_output=True, text=True, timeout=30, check=True,
            )
            assert not (run_dir / "CANARY").exists(), (field, payload)
            assert result.stdout.splitlines() == words
    assert refused + len(loaded) == len(PAYLOADS)
    # Only plain words load (as inert argv items or env text); anything with shell syntax
    # is refused at load time in every field.
    assert set(loaded) <= {"touch CANARY"}, (field, loaded)


def test_env_value_with_spaces_is_kept_as_text_not_run(tmp_path):
    file = write_recipe(tmp_path, _put(base(), "env value", "touch CANARY"))
    (task,) = load_recipe(file.parent).tasks
    assert dict(task.engine.extra_env)["SOME_SETTING"] == "touch CANARY"
