"""Engine flag maps and server argv for vLLM and SGLang."""

from __future__ import annotations

import pytest

from deplodock_dagster.recipe.engine_flags import (
    DEPLOY_FIELDS,
    container_command,
    covered_field,
    named_flags,
    process_argv,
    server_args,
    server_module,
)
from deplodock_dagster.recipe.types import ENGINES, EngineSpec

NAMED_FIELDS = {
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "max_num_seqs",
}

DEPLOY = dict(model_path="/hf/org/m", served_model_name="org/m", host="0.0.0.0", port=8000)


@pytest.mark.parametrize(
    ("engine", "flag", "field"),
    [
        ("vllm", "--tensor-parallel-size", "tensor_parallel_size"),
        ("vllm", "-tp", "tensor_parallel_size"),
        ("vllm", "-pp", "pipeline_parallel_size"),
        ("vllm", "--data-parallel-size", "data_parallel_size"),
        ("vllm", "-dp", "data_parallel_size"),
        ("vllm", "--gpu-memory-utilization", "gpu_memory_utilization"),
        ("vllm", "--max-model-len", "max_model_len"),
        ("vllm", "--max-num-seqs", "max_num_seqs"),
        ("vllm", "--model", "model"),
        ("vllm", "--served-model-name", "served_model_name"),
        ("vllm", "--host", "host"),
        ("vllm", "--port", "port"),
        ("sglang", "--tp-size", "tensor_parallel_size"),
        ("sglang", "--tp", "tensor_parallel_size"),
        ("sglang", "--pp-size", "pipeline_parallel_size"),
        ("sglang", "--dp-size", "data_parallel_size"),
        ("sglang", "--dp", "data_parallel_size"),
        ("sglang", "--mem-fraction-static", "gpu_memory_utilization"),
        ("sglang", "--context-length", "max_model_len"),
        ("sglang", "--max-running-requests", "max_num_seqs"),
        ("sglang", "--model-path", "model"),
        ("sglang", "--served-model-name", "served_model_name"),
        ("sglang", "--host", "host"),
        ("sglang", "--port", "port"),
    ],
)
def test_named_flags_maps_each_spelling(engine, flag, field):
    assert named_flags(engine)[flag] == field


@pytest.mark.parametrize("engine", ENGINES)
def test_named_flags_cover_every_named_field_and_deploy_field(engine):
    fields = set(named_flags(engine).values())
    assert fields == NAMED_FIELDS | set(DEPLOY_FIELDS)
    # Every named field is a real EngineSpec attribute.
    spec = EngineSpec(engine=engine, image="img:1")
    for name in NAMED_FIELDS:
        assert hasattr(spec, name)


def test_unknown_engine_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown engine 'tgi'.*vllm, sglang"):
        named_flags("tgi")
    with pytest.raises(ValueError, match="unknown engine"):
        server_module("tgi")


@pytest.mark.parametrize(
    ("engine", "arg", "field"),
    [
        ("vllm", "--max-model-len=4096", "max_model_len"),
        ("vllm", "--max_model_len", "max_model_len"),
        ("vllm", "--gpu-memory", "gpu_memory_utilization"),  # argparse abbreviation
        ("vllm", "-tp", "tensor_parallel_size"),
        ("vllm", "--kv-cache-dtype", None),
        ("vllm", "--enable-expert-parallel", None),
        ("vllm", "fp8", None),  # a value, not a flag
        ("vllm", "--mem-fraction-static", None),  # SGLang's flag is free text to vLLM
        ("sglang", "--mem-fraction-static=0.8", "gpu_memory_utilization"),
        ("sglang", "--context-length", "max_model_len"),
        ("sglang", "--tp=2", "tensor_parallel_size"),
        ("sglang", "--model", "model"),
        ("sglang", "--max-model-len", None),
        ("sglang", "--enable-dp-attention", None),
    ],
)
def test_covered_field(engine, arg, field):
    assert covered_field(engine, arg) == field


def test_server_module():
    assert server_module("vllm") == "vllm.entrypoints.openai.api_server"
    assert server_module("sglang") == "sglang.launch_server"


def test_vllm_server_args_named_fields_then_extra_args():
    engine = EngineSpec(
        engine="vllm",
        image="vllm/vllm-openai:v0.11.0",
        tensor_parallel_size=8,
        gpu_memory_utilization=0.9,
        max_model_len=16384,
        max_num_seqs=512,
        extra_args=("--kv-cache-dtype", "fp8"),
    )
    assert server_args(engine, **DEPLOY) == [
        "--model", "/hf/org/m",
        "--served-model-name", "org/m",
        "--host", "0.0.0.0",
        "--port", "8000",
        "--tensor-parallel-size", "8",
        "--gpu-memory-utilization", "0.9",
        "--max-model-len", "16384",
        "--max-num-seqs", "512",
        "--kv-cache-dtype", "fp8",
    ]


def test_sglang_server_args_use_sglang_spelling():
    engine = EngineSpec(
        engine="sglang",
        image="lmsysorg/sglang:v0.5.4",
        tensor_parallel_size=2,
        pipeline_parallel_size=2,
        data_parallel_size=2,
        gpu_memory_utilization=0.85,
        max_model_len=8192,
        max_num_seqs=128,
        extra_args=("--enable-dp-attention",),
    )
    assert server_args(engine, **DEPLOY) == [
        "--model-path", "/hf/org/m",
        "--served-model-name", "org/m",
        "--host", "0.0.0.0",
        "--port", "8000",
        "--tp-size", "2",
        "--pp-size", "2",
        "--dp-size", "2",
        "--mem-fraction-static", "0.85",
        "--context-length", "8192",
        "--max-running-requests", "128",
        "--enable-dp-attention",
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_unset_fields_write_no_flag(engine):
    args = server_args(EngineSpec(engine=engine, image="img:1"), **DEPLOY)
    assert len(args) == 8  # only model, served name, host and port with their values
    assert set(args[0::2]) <= set(named_flags(engine))


def test_values_stay_single_argv_items():
    # A value with spaces or shell characters is one item, never split or interpreted.
    engine = EngineSpec(
        engine="vllm", image="img:1", extra_args=("--chat-template", "a b; rm -rf /")
    )
    args = server_args(engine, **{**DEPLOY, "served_model_name": "org/m $(x)"})
    assert "org/m $(x)" in args
    assert args[-1] == "a b; rm -rf /"


def test_process_and_container_commands():
    vllm = EngineSpec(engine="vllm", image="vllm/vllm-openai:v0.11.0")
    sglang = EngineSpec(engine="sglang", image="lmsysorg/sglang:v0.5.4")

    argv = process_argv(vllm, "/venv/bin/python", **DEPLOY)
    assert argv[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[3:] == server_args(vllm, **DEPLOY)

    # The vLLM image's entrypoint is the API server: the command is only its arguments.
    assert container_command(vllm, **DEPLOY) == server_args(vllm, **DEPLOY)
    # The SGLang image has no server entrypoint: the command starts it.
    assert container_command(sglang, **DEPLOY) == [
        "python3", "-m", "sglang.launch_server", *server_args(sglang, **DEPLOY)
    ]
