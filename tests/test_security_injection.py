"""Shell-injection payloads in every recipe field that reaches a host never run there.

Each payload is either refused when the recipe loads (a RecipeError naming the file and the
field) or passed as data: it reaches the engine and the benchmark byte for byte, through a
real shell (the one sshd runs commands with) and through the compose file. The last test
deploys the accepted payloads for real, over the loopback sshd with the stand-in engine,
and checks that no canary file was ever created. (Random recipe files in general are the
recipes owner's property tests, tests/test_recipe_properties.py.)
"""

from __future__ import annotations

import copy
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deplodock_dagster.errors import RecipeError
from deplodock_dagster.recipe import load_recipe

CANARY = Path(tempfile.gettempdir()) / "deplodock-injection-CANARY"
C = str(CANARY)

PAYLOADS = [
    f"$(touch {C})",
    f"`touch {C}`",
    f"; touch {C}",
    f"| touch {C}",
    f"& touch {C}",
    f"&& touch {C}",
    f"|| touch {C}",
    f"\ntouch {C}",
    f"x\rtouch {C}",
    f"'; touch {C}; '",
    f'"; touch {C}; "',
    f"${{IFS}}touch${{IFS}}{C}",
    f"$IFS/touch {C}",
    f"--flag=$(touch {C})",
    f"--flag=`touch {C}`",
    f"> {C}",
    f"< /etc/passwd > {C}",
    f"\uff04(touch {C})",  # fullwidth dollar sign
    f"\uff1btouch {C}",  # fullwidth semicolon
    f"\u037etouch {C}",  # Greek question mark, looks like ';'
    f"\u2018; touch {C}; \u2019",  # curly quotes
    f"{{touch,{C}}}",  # brace expansion
    f"--x={{touch,{C}}}",
    f"--x=\"$(touch {C})\"",
    "a b",
    "--x=\"quoted\"",
    "--y=[a,b]",
    "100%",
    "\x00touch",
    "-" * 3 + "help",
]

BASE = {
    "model": {"name": "deplodock/tiny-llama"},
    "runtime": "process",
    "backend": {"vllm": {"max_model_len": 512}},
    "benchmark": {"max_concurrency": 2, "num_prompts": 4, "random_input_len": 16,
                  "random_output_len": 8},
    "variants": {"x": {"gpu": "NVIDIA L40S", "gpu_count": 1}},
}


def _set(data: dict, field: str, payload: str) -> str:
    """Put `payload` in `field` of the recipe `data`; return the field's dotted name."""
    vllm = data["backend"]["vllm"]
    if field == "model.name":
        data["model"]["name"] = payload
    elif field == "image":
        vllm["image"] = payload
    elif field == "extra_args (string)":
        vllm["extra_args"] = payload
        return "backend.vllm.extra_args"
    elif field == "extra_args (list)":
        vllm["extra_args"] = ["--enforce-eager", payload]
        return "backend.vllm.extra_args"
    elif field == "extra_env name":
        data["extra_env"] = {payload: "1"}
        return "extra_env"
    elif field == "extra_env value":
        data["extra_env"] = {"DEPLODOCK_X": payload}
        return "extra_env"
    elif field == "engine extra_env value":
        vllm["extra_env"] = {"DEPLODOCK_Y": payload}
        return "backend.vllm.extra_env"
    elif field in ("num_prompts", "max_concurrency", "random_input_len"):
        data["benchmark"][field] = payload
        return f"benchmark.{field}"
    elif field == "benchmark extra_args":
        data["benchmark"]["extra_args"] = [payload]
        return "benchmark.extra_args"
    elif field == "dataset_name":
        data["benchmark"]["dataset_name"] = payload
        return "benchmark.dataset_name"
    elif field == "variant name":
        data["variants"] = {payload: data["variants"]["x"]}
        return "variants"
    elif field == "gpu":
        data["variants"]["x"]["gpu"] = payload
        return "variants"
    elif field == "gpu_count":
        data["variants"]["x"]["gpu_count"] = payload
        return "variants"
    elif field == "max_model_len":
        vllm["max_model_len"] = payload
    else:
        raise AssertionError(field)
    return {"model.name": "model.name", "image": "backend.vllm.image",
            "max_model_len": "backend.vllm.max_model_len"}[field]


FIELDS = ["model.name", "image", "extra_args (string)", "extra_args (list)", "extra_env name",
          "extra_env value", "engine extra_env value", "num_prompts", "max_concurrency",
          "random_input_len", "benchmark extra_args", "dataset_name", "variant name", "gpu",
          "gpu_count", "max_model_len"]


def _load(root: Path, data: dict):
    folder = root / "r"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_recipe(folder), folder


def _through_sh(argv: list[str]) -> list[str]:
    """What a real shell hands a program when given the line a remote host receives."""
    from deplodock_dagster.hosts.base import shell_command

    line = shell_command(["printf", "%s\\0", *argv])
    out = subprocess.run(["sh", "-c", line], capture_output=True, check=True, timeout=30)
    return out.stdout.decode().split("\0")[:-1]


def _host_argvs(task) -> list[list[str]]:
    """The argv lists carrying recipe data: the engine command and the benchmark command."""
    from deplodock_dagster.bench.workload import bench_args
    from deplodock_dagster.deploy.params import DeployParams
    from deplodock_dagster.deploy.runtimes.process import ProcessRuntime
    from deplodock_dagster.hosts import DryRunHost

    params = DeployParams(recipe=task.recipe, host=DryRunHost(), runtime="process",
                          deploy_dir="/srv/deplodock", model_dir="/models")
    runtime = ProcessRuntime()
    args = bench_args(task.recipe.benchmark, served_model_name=task.recipe.model_name,
                      base_url="http://127.0.0.1:8000", tokenizer="/models/x",
                      result_dir="/srv/deplodock/bench")
    return [runtime.engine_argv(params), runtime.bench_command(params, args)]


SETTINGS = settings(derandomize=True, max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
# Letters, the characters recipes may use, and shell metacharacters, quotes, lookalikes.
DATA_ALPHABET = list("abc019 _.,:=/+@%{}[]\"-$`;|&<>()\\'*?!#~\t") + ["\u00e9", "\uff04"]
DATA_FIELDS = ["extra_args (list)", "extra_args (string)", "extra_env value",
               "engine extra_env value", "benchmark extra_args"]


def _refused_or_data(field: str, value: str) -> None:
    """Load a recipe with `value` in `field`: a RecipeError naming the file and the field,
    or every host command and the compose file carry the value unchanged."""
    from deplodock_dagster.bench.tasks import enumerate_tasks
    from deplodock_dagster.deploy.compose import generate_compose

    data = copy.deepcopy(BASE)
    dotted = _set(data, field, value)
    with tempfile.TemporaryDirectory() as folder:
        try:
            _, path = _load(Path(folder), data)
        except RecipeError as error:
            event("refused at load")
            assert str(Path(folder) / "r") in str(error)
            assert error.field.startswith(dotted), (error.field, dotted)
            return
        tasks = enumerate_tasks([path])
    event("accepted: checked as data")
    assert not CANARY.exists()
    for task in tasks:
        for argv in _host_argvs(task):
            assert _through_sh(argv) == argv  # every item arrives as one word, unchanged
        compose = yaml.safe_load(generate_compose(task.recipe, model_dir="/models"))
        engine = next(iter(compose["services"].values()))
        command = engine.get("command") or []
        extra = list(task.recipe.engine.extra_args)
        assert command[len(command) - len(extra):] == extra
        environment = engine.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for name, env_value in task.recipe.engine.extra_env:
            assert str(environment[name]) == env_value


@SETTINGS
@given(field=st.sampled_from(FIELDS), payload=st.sampled_from(PAYLOADS),
       prefix=st.sampled_from(["", "a", "--opt="]), suffix=st.sampled_from(["", "z", " "]))
def test_payload_is_refused_naming_the_field_or_passed_as_data(field, payload, prefix, suffix):
    _refused_or_data(field, prefix + payload + suffix)


@SETTINGS
@given(field=st.sampled_from(DATA_FIELDS),
       value=st.text(st.sampled_from(DATA_ALPHABET), min_size=1, max_size=30))
def test_any_text_in_a_data_field_is_refused_or_arrives_unchanged(field, value):
    _refused_or_data(field, value)


def test_every_payload_is_refused_in_fields_that_take_no_free_text():
    for field in ("model.name", "image", "extra_env name", "num_prompts", "variant name",
                  "gpu", "dataset_name"):
        for payload in PAYLOADS:
            data = copy.deepcopy(BASE)
            dotted = _set(data, field, payload)
            with tempfile.TemporaryDirectory() as folder, pytest.raises(RecipeError) as caught:
                _load(Path(folder), data)
            assert caught.value.field.startswith(dotted)
            assert caught.value.hint or caught.value.problem


def _accepted(field: str) -> list[str]:
    accepted = []
    for payload in PAYLOADS:
        data = copy.deepcopy(BASE)
        _set(data, field, payload)
        with tempfile.TemporaryDirectory() as folder:
            try:
                _load(Path(folder), data)
            except RecipeError:
                continue
        accepted.append(payload)
    return accepted


@pytest.mark.sshd
def test_accepted_payloads_deployed_over_ssh_run_nothing_and_arrive_intact(
        reliability_rig, reliability_row):
    rig, row = reliability_rig, reliability_row
    CANARY.unlink(missing_ok=True)
    args = _accepted("extra_args (list)")
    env_values = _accepted("extra_env value")
    bench_extra = _accepted("benchmark extra_args")
    assert args and env_values and bench_extra  # some payloads are data, not refused
    env = {f"DEPLODOCK_P{i}": value for i, value in enumerate(env_values)}
    # The recipe folder's name is a partition key and a task id: a hostile one is refused.
    hostile = rig.recipe("r$(touch deplodock-injection-CANARY)")
    with pytest.raises(RecipeError, match="recipe name"):
        load_recipe(hostile)
    name = "r"
    rig.recipe(name, extra={
        "backend": {"vllm": {"max_model_len": 512, "extra_args": args}},
        "extra_env": env,
        "benchmark": {"max_concurrency": 2, "num_prompts": 4, "random_input_len": 16,
                      "random_output_len": 8, "extra_args": bench_extra},
    })
    run = rig.run([name])
    refused = sum(len(PAYLOADS) - len(_accepted(field)) for field in FIELDS)
    row.fault = f"{len(PAYLOADS)} shell-injection payloads x {len(FIELDS)} recipe fields"
    row.expected = "refused at load, or passed as data; canary never created"
    row.seen = (f"{refused} field/payload pairs refused at load; "
                f"{len(args) + len(env_values) + len(bench_extra)} deployed as data over "
                f"sshd; canary {'CREATED' if CANARY.exists() else 'absent'}")
    row.vms_leaked = len(rig.live_vms())
    row.results_lost = 0 if run.success else 1
    assert run.success, run.failure_text()
    assert not CANARY.exists()
    for where in (rig.deploy_dir, Path.home(), rig.tmp, Path("/")):
        assert not (where / "deplodock-injection-CANARY").exists()
    engine = rig.standin.calls("engine")[-1]
    assert engine["argv"][-len(args):] == args
    for key, value in env.items():
        assert engine["env"][key] == value
    bench = rig.standin.calls("bench")[-1]
    assert bench["argv"][-len(bench_extra):] == bench_extra
    assert rig.live_vms() == []
