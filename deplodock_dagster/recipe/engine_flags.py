"""Each engine's command-line flags for the named EngineSpec fields.

A recipe states engine settings once (tensor parallel size, memory fraction, context length,
...) and this module spells them in the flags of vLLM or SGLang. The same table tells the
recipe loader which `extra_args` would duplicate a named field, so a recipe cannot set one
thing twice in two ways.

Flags the deploy sets itself (model path, served model name, host, port) map to the
pseudo-fields "model", "served_model_name", "host" and "port".
"""

from __future__ import annotations

from deplodock_dagster.recipe.types import ENGINES, EngineSpec

# Field name -> every spelling of its flag; the first spelling is the one we emit.
_VLLM_FLAGS: dict[str, tuple[str, ...]] = {
    "model": ("--model",),
    "served_model_name": ("--served-model-name",),
    "host": ("--host",),
    "port": ("--port",),
    "tensor_parallel_size": ("--tensor-parallel-size", "-tp"),
    "pipeline_parallel_size": ("--pipeline-parallel-size", "-pp"),
    "data_parallel_size": ("--data-parallel-size", "-dp"),
    "gpu_memory_utilization": ("--gpu-memory-utilization",),
    "max_model_len": ("--max-model-len",),
    "max_num_seqs": ("--max-num-seqs",),
}

_SGLANG_FLAGS: dict[str, tuple[str, ...]] = {
    "model": ("--model-path", "--model"),
    "served_model_name": ("--served-model-name",),
    "host": ("--host",),
    "port": ("--port",),
    "tensor_parallel_size": ("--tp-size", "--tp", "--tensor-parallel-size"),
    "pipeline_parallel_size": ("--pp-size", "--pipeline-parallel-size"),
    "data_parallel_size": ("--dp-size", "--dp", "--data-parallel-size"),
    "gpu_memory_utilization": ("--mem-fraction-static",),
    "max_model_len": ("--context-length",),
    "max_num_seqs": ("--max-running-requests",),
}

_FLAGS_BY_ENGINE = {"vllm": _VLLM_FLAGS, "sglang": _SGLANG_FLAGS}

_SERVER_MODULES = {
    "vllm": "vllm.entrypoints.openai.api_server",
    "sglang": "sglang.launch_server",
}

# Named EngineSpec fields in the order their flags are emitted, with the value that means
# "not set" (the engine's own default applies and no flag is written).
_NAMED_FIELDS: tuple[tuple[str, object], ...] = (
    ("tensor_parallel_size", 1),
    ("pipeline_parallel_size", 1),
    ("data_parallel_size", 1),
    ("gpu_memory_utilization", None),
    ("max_model_len", None),
    ("max_num_seqs", None),
)

# Deploy-set pseudo-fields, which are not EngineSpec attributes.
DEPLOY_FIELDS = ("model", "served_model_name", "host", "port")


def _table(engine_name: str) -> dict[str, tuple[str, ...]]:
    try:
        return _FLAGS_BY_ENGINE[engine_name]
    except KeyError:
        raise ValueError(
            f"unknown engine {engine_name!r}: expected one of {', '.join(ENGINES)}"
        ) from None


def named_flags(engine_name: str) -> dict[str, str]:
    """Every flag spelling a named field (or the deploy) covers, mapped to the field name.

    Example: `named_flags("vllm")["-tp"] == "tensor_parallel_size"`.
    Raises ValueError for an engine not in ENGINES.
    """
    return {flag: name for name, flags in _table(engine_name).items() for flag in flags}


def covered_field(engine_name: str, arg: str) -> str | None:
    """The field an `extra_args` item would duplicate, or None when it is a free flag.

    Understands `--flag=value`, underscores for dashes (`--max_model_len`, which vLLM's
    parser accepts) and unambiguous abbreviations of a long flag (argparse accepts those).
    Values (items not starting with '-') are never covered.
    """
    if not arg.startswith("-"):
        return None
    flag = arg.split("=", 1)[0]
    if flag.startswith("--"):
        flag = "--" + flag[2:].replace("_", "-")
    flags = named_flags(engine_name)
    if flag in flags:
        return flags[flag]
    if flag.startswith("--") and len(flag) > 3:
        prefixed = {name for spelling, name in flags.items() if spelling.startswith(flag)}
        if len(prefixed) == 1:
            return prefixed.pop()
    return None


def server_module(engine_name: str) -> str:
    """The Python module that starts the engine's OpenAI-compatible server (`python -m`)."""
    _table(engine_name)
    return _SERVER_MODULES[engine_name]


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form: 0.9, not 0.900000
    return str(value)


def server_args(
    engine: EngineSpec, *, model_path: str, served_model_name: str, host: str, port: int
) -> list[str]:
    """The server's argv after the module: deploy flags, named fields, then extra_args.

    Each flag and each value is its own item (never a shell string). Named fields are written
    only when set: parallel sizes above 1, the optional fields when not None.
    """
    table = _table(engine.engine)
    args = [
        table["model"][0], str(model_path),
        table["served_model_name"][0], str(served_model_name),
        table["host"][0], str(host),
        table["port"][0], str(int(port)),
    ]
    for name, unset in _NAMED_FIELDS:
        value = getattr(engine, name)
        if value is None or value == unset:
            continue
        args += [table[name][0], _format_value(value)]
    args += list(engine.extra_args)
    return args


def process_argv(engine: EngineSpec, python: str, **kwargs) -> list[str]:
    """Full argv to run the server as a plain process: `python -m <module> <server_args>`.

    `kwargs` are the keyword arguments of server_args.
    """
    return [python, "-m", server_module(engine.engine), *server_args(engine, **kwargs)]


def container_command(engine: EngineSpec, **kwargs) -> list[str]:
    """The compose `command` for the engine's official image.

    The vllm/vllm-openai image's entrypoint already starts the API server, so the command is
    only its arguments; the lmsysorg/sglang image has no such entrypoint, so the command runs
    `python3 -m sglang.launch_server` itself. `kwargs` are those of server_args.
    """
    args = server_args(engine, **kwargs)
    if engine.engine == "vllm":
        return args
    return ["python3", "-m", server_module(engine.engine), *args]
