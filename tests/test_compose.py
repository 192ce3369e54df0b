"""Compose generation for vLLM and SGLang, checked against the Compose Specification."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from deplodock_dagster.deploy.compose import (
    BALANCER_SERVICE,
    NGINX_CONF_NAME,
    NGINX_CONF_TARGET,
    compose_errors,
    generate_compose,
    validate_compose,
)
from deplodock_dagster.errors import DeployError
from deplodock_dagster.recipe.engine_flags import server_args
from deplodock_dagster.recipe.types import BenchmarkSpec, EngineSpec, ResolvedRecipe

MODEL_DIR = "/hf_models"


def make_recipe(
    engine: str = "vllm", *, gpu_count: int = 8, tp: int = 8, **engine_fields
) -> ResolvedRecipe:
    image = "vllm/vllm-openai:v0.11.0" if engine == "vllm" else "lmsysorg/sglang:v0.5.4"
    spec = EngineSpec(engine=engine, image=image, tensor_parallel_size=tp, **engine_fields)
    return ResolvedRecipe(
        recipe_name="glm-4.6",
        recipe_path="recipes/glm-4.6/recipe.yaml",
        variant=f"{gpu_count}xH200",
        model_name="zai-org/GLM-4.6-FP8",
        engine=spec,
        benchmark=BenchmarkSpec(
            max_concurrency=128, num_prompts=256, random_input_len=8000, random_output_len=8000
        ),
        gpu_name="NVIDIA H200 141GB",
        gpu_count=gpu_count,
    )


def render(recipe: ResolvedRecipe, **kwargs) -> tuple[str, dict]:
    """Generate, check against the spec, and parse: every test's compose is validated."""
    text = generate_compose(recipe, model_dir=MODEL_DIR, **kwargs)
    validate_compose(text)
    return text, yaml.safe_load(text)


def gpu_devices(service: dict) -> list[dict]:
    return service["deploy"]["resources"]["reservations"]["devices"]


# --- one instance ------------------------------------------------------------------------


def test_one_vllm_instance_uses_all_gpus_and_publishes_the_port():
    recipe = make_recipe(
        gpu_memory_utilization=0.9, max_num_seqs=512,
        extra_args=("--kv-cache-dtype", "fp8"), extra_env=(("VLLM_USE_V1", "1"),),
    )
    _, data = render(recipe, port=8080)

    assert list(data["services"]) == ["engine_0"]
    engine = data["services"]["engine_0"]
    assert engine["image"] == "vllm/vllm-openai:v0.11.0"
    assert gpu_devices(engine) == [{"driver": "nvidia", "capabilities": ["gpu"], "count": "all"}]
    assert engine["ports"] == [{"target": 8000, "published": "8080", "protocol": "tcp"}]

    # The vLLM image's entrypoint is the server: the command is its argv, as a YAML list.
    assert engine["command"] == server_args(
        recipe.engine,
        model_path="/hf_models/zai-org/GLM-4.6-FP8",
        served_model_name="zai-org/GLM-4.6-FP8",
        host="0.0.0.0",
        port=8000,
    )
    assert engine["command"][-2:] == ["--kv-cache-dtype", "fp8"]

    # Model cache mounted at the same path and used as HF_HOME; extra_env passed through.
    assert engine["volumes"] == [{"type": "bind", "source": MODEL_DIR, "target": MODEL_DIR}]
    assert engine["environment"] == {"HF_HOME": MODEL_DIR, "VLLM_USE_V1": "1"}
    assert engine["env_file"] == [".env"]
    assert engine["ipc"] == "host" and engine["shm_size"]
    assert engine["healthcheck"]["test"] == [
        "CMD", "curl", "-fsS", "http://localhost:8000/health"
    ]


def test_one_sglang_instance_starts_the_server_module():
    recipe = make_recipe(
        "sglang", gpu_count=4, tp=4, gpu_memory_utilization=0.85, max_model_len=16384
    )
    _, data = render(recipe)

    command = data["services"]["engine_0"]["command"]
    assert command[:3] == ["python3", "-m", "sglang.launch_server"]
    assert command[3:5] == ["--model-path", "/hf_models/zai-org/GLM-4.6-FP8"]
    assert ["--tp-size", "4"] == command[command.index("--tp-size"):][:2]
    assert "--mem-fraction-static" in command and "--context-length" in command
    assert "--tensor-parallel-size" not in command


def test_one_instance_on_a_subset_of_gpus_gets_device_ids():
    # The planner pins a 2-GPU task on an 8-GPU VM to explicit devices.
    _, data = render(make_recipe(gpu_count=2, tp=2), gpu_device_ids=(4, 5))
    engine = data["services"]["engine_0"]
    assert gpu_devices(engine)[0]["device_ids"] == ["4", "5"]
    assert "count" not in gpu_devices(engine)[0]
    assert BALANCER_SERVICE not in data["services"]


# --- several instances -------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_several_instances_split_gpus_behind_a_balancer(engine):
    _, data = render(make_recipe(engine, gpu_count=8, tp=2), port=9000)
    services = data["services"]

    assert list(services) == ["engine_0", "engine_1", "engine_2", "engine_3", BALANCER_SERVICE]
    ids = [gpu_devices(services[f"engine_{i}"])[0]["device_ids"] for i in range(4)]
    assert ids == [["0", "1"], ["2", "3"], ["4", "5"], ["6", "7"]]
    for i in range(4):
        assert "ports" not in services[f"engine_{i}"]  # only the balancer is reachable

    balancer = services[BALANCER_SERVICE]
    assert balancer["image"].startswith("nginx:")
    assert balancer["ports"] == [{"target": 9000, "published": "9000", "protocol": "tcp"}]
    assert balancer["volumes"][0]["source"] == f"./{NGINX_CONF_NAME}"
    assert balancer["volumes"][0]["target"] == NGINX_CONF_TARGET
    assert balancer["volumes"][0]["read_only"] is True
    assert balancer["depends_on"] == {
        f"engine_{i}": {"condition": "service_healthy"} for i in range(4)
    }


def test_several_instances_on_given_device_ids():
    _, data = render(make_recipe(gpu_count=4, tp=1, data_parallel_size=2),
                     gpu_device_ids=[7, 6, 1, 0])
    services = data["services"]
    assert gpu_devices(services["engine_0"])[0]["device_ids"] == ["7", "6"]
    assert gpu_devices(services["engine_1"])[0]["device_ids"] == ["1", "0"]
    assert "--data-parallel-size" in services["engine_0"]["command"]


@pytest.mark.parametrize(
    ("device_ids", "message"),
    [
        ((0, 1, 2), "needs 4 distinct GPU device ids"),
        ((0, 1, 1, 2), "needs 4 distinct GPU device ids"),
        (("0", "1", "2", "x; reboot"), "must be non-negative integers"),
        ((0, 1, 2, -3), "must be non-negative integers"),
    ],
)
def test_bad_device_ids_are_refused(device_ids, message):
    with pytest.raises(DeployError, match=message):
        generate_compose(make_recipe(gpu_count=4, tp=2), model_dir=MODEL_DIR,
                         gpu_device_ids=device_ids)


def test_gpu_count_not_a_multiple_of_instance_gpus_is_refused():
    with pytest.raises(DeployError, match="not a multiple of the 4 GPU"):
        generate_compose(make_recipe(gpu_count=6, tp=4), model_dir=MODEL_DIR)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_dir": "hf_models"}, "must be an absolute path"),
        ({"model_dir": MODEL_DIR, "port": 70000}, "not a TCP port"),
        ({"model_dir": MODEL_DIR, "port": 0}, "not a TCP port"),
    ],
)
def test_bad_deploy_settings_are_refused(kwargs, message):
    with pytest.raises(DeployError, match=message):
        generate_compose(make_recipe(), **kwargs)


# --- secrets and quoting -----------------------------------------------------------------


def test_token_only_through_the_env_file(monkeypatch):
    token = "hf_SECRETtokenValue123"
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", token)
    text, data = render(make_recipe(gpu_count=8, tp=4), env_file="secrets/hf.env")

    assert token not in text
    assert "TOKEN" not in text  # not even an empty HF_TOKEN= placeholder as the seed had
    for name in ("engine_0", "engine_1"):
        assert data["services"][name]["env_file"] == ["secrets/hf.env"]
    assert "env_file" not in data["services"][BALANCER_SERVICE]


@pytest.mark.parametrize("name", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME"])
def test_recipe_may_not_set_reserved_environment(name):
    recipe = make_recipe(extra_env=((name, "x"),))
    with pytest.raises(DeployError, match=rf"recipes/glm-4.6/recipe.yaml: extra_env.{name}"):
        generate_compose(recipe, model_dir=MODEL_DIR)


def test_dollar_signs_cannot_interpolate_host_variables():
    # Compose substitutes ${VAR} from the host environment: a recipe value must not be able
    # to pull the token (or anything else) into a command line.
    recipe = make_recipe(
        extra_args=("--chat-template", "${HF_TOKEN}"), extra_env=(("TEMPLATE", "$HF_TOKEN"),)
    )
    _, data = render(recipe)
    engine = data["services"]["engine_0"]
    assert engine["command"][-1] == "$${HF_TOKEN}"
    assert engine["environment"]["TEMPLATE"] == "$$HF_TOKEN"


TRICKY_VALUES = [
    "yes", "no", "on", "off", "true", "null", "~", "0.9", "1e3", "0x1F", "010", "8000:80",
    "12:30", "a: b", "- item", "# comment", "'quoted'", '"double"', "[1, 2]", "{a: 1}",
    "multi\nline", "tab\there", " leading space", "trailing space ", "&anchor", "*alias",
    "!!python/object:os.system", "%percent", "@at", "`tick`", "a,b", "",
]


@pytest.mark.parametrize("value", TRICKY_VALUES)
def test_every_recipe_value_round_trips_as_a_string(value):
    recipe = make_recipe(extra_args=("--opt", value), extra_env=(("EXTRA", value),))
    _, data = render(recipe)
    engine = data["services"]["engine_0"]
    assert engine["command"][-2:] == ["--opt", value]
    assert engine["environment"]["EXTRA"] == value


@settings(max_examples=150, deadline=None)
@given(
    value=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
    ),
    name=st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True),
)
def test_any_text_round_trips(value, name):
    if name in ("HF_HOME", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        name = "X" + name
    recipe = make_recipe(extra_args=("--opt", value), extra_env=((name, value),))
    text = generate_compose(recipe, model_dir=MODEL_DIR)
    engine = yaml.safe_load(text)["services"]["engine_0"]
    escaped = value.replace("$", "$$")
    assert engine["command"][-1] == escaped
    assert engine["environment"][name] == escaped


def test_line_breaks_in_names_cannot_break_out_of_the_header_comment():
    recipe = dataclasses.replace(make_recipe(), variant="8xH200\nservices: {}")
    text, data = render(recipe)
    assert text.splitlines()[0].startswith("# Generated by deplodock for glm-4.6/8xH200 ")
    assert list(data["services"]) == ["engine_0"]


# --- the validator itself ----------------------------------------------------------------


def _broken(mutate) -> str:
    data = yaml.safe_load(generate_compose(make_recipe(gpu_count=8, tp=4), model_dir=MODEL_DIR))
    mutate(data)
    return yaml.safe_dump(data)


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d["services"]["engine_0"].update(gpus_please=True), "services.engine_0"),
        (lambda d: d["services"]["engine_1"].update(command=42), "services.engine_1.command"),
        (lambda d: d["services"]["engine_0"]["healthcheck"].update(retries=[3]),
         "services.engine_0.healthcheck.retries"),
        (lambda d: d["services"]["balancer"].update(depends_on="engine_0: yes"),
         "services.balancer.depends_on"),
        (lambda d: d.update(servics={}), "<top>"),
    ],
)
def test_validator_rejects_a_broken_compose(mutate, where):
    text = _broken(mutate)
    errors = compose_errors(text)
    assert errors and any(error.startswith(where) for error in errors), errors
    with pytest.raises(DeployError, match="does not match the Compose Specification"):
        validate_compose(text)


def test_validator_rejects_text_that_is_not_yaml():
    with pytest.raises(DeployError, match="not valid YAML"):
        validate_compose("services: [unclosed")


def test_validator_accepts_the_seed_compose(fixtures_dir):
    # The predecessor's real compose file (from a 2025-11 result) is valid too.
    text = (fixtures_dir / "deplodock-results-2025-11"
            / "h100_x_8_zai-org_GLM-4.6-FP8_vllm_benchmark.txt").read_text()
    compose = text[text.index("services:"):text.index("============ Benchmark Command")]
    validate_compose(compose)


# --- the shipped recipes -----------------------------------------------------------------


def test_every_shipped_task_as_planned_gives_a_valid_compose():
    """Each task of recipes/, with the device ids the planner gives it, is a valid compose."""
    from deplodock_dagster.bench.tasks import enumerate_tasks
    from deplodock_dagster.planner.group_by_model_and_gpu import GroupByModelAndGpuPlanner
    from deplodock_dagster.recipe import find_recipes

    groups = GroupByModelAndGpuPlanner().plan(enumerate_tasks(find_recipes()))
    tasks = [task for group in groups for task in group.tasks]
    assert tasks, "no recipes found"
    seen_balancer = seen_pinned = seen_sglang = False
    for task in tasks:
        _, data = render(task.recipe, gpu_device_ids=task.gpu_device_ids)
        services = data["services"]
        engines = [name for name in services if name.startswith("engine_")]
        assert len(engines) == task.recipe.num_instances, task.task_id
        seen_balancer |= BALANCER_SERVICE in services
        seen_pinned |= task.gpu_device_ids is not None
        seen_sglang |= task.recipe.engine.engine == "sglang"
        # Every engine's GPUs, together, are the task's GPUs, each once.
        devices = [gpu_devices(services[name])[0] for name in engines]
        if "count" not in devices[0]:
            ids = [i for device in devices for i in device["device_ids"]]
            assert len(ids) == len(set(ids)) == task.recipe.gpu_count, task.task_id
    # The shipped recipes exercise every shape; if they stop doing so, this test says so.
    assert seen_balancer and seen_pinned and seen_sglang
