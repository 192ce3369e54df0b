"""Check one merged recipe mapping and build its typed ResolvedRecipe.

The loader merges base, variant and sweep point into one plain mapping; this module checks
every field of it and raises RecipeError naming the file, the field and what was expected.
Nothing from a recipe reaches a shell: model names and images must match strict patterns,
`extra_args` items are single argv words without shell metacharacters, and flags that have
a named field are refused there (they would set one thing twice in two ways).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Mapping

from deplodock_dagster.errors import ConfigError, RecipeError
from deplodock_dagster.recipe.types import (
    ENGINES,
    RUNTIMES,
    BenchmarkSpec,
    EngineSpec,
    ResolvedRecipe,
)

# Pinned defaults when a recipe names no image.
DEFAULT_IMAGES = {
    "vllm": "vllm/vllm-openai:v0.11.0",
    "sglang": "lmsysorg/sglang:v0.5.3",
}

# Keys a merged variant may hold (the file's top level also has `variants` and `matrices`).
VARIANT_KEYS = (
    "description", "model", "backend", "benchmark", "gpu", "gpu_count", "runtime", "extra_env",
)
MODEL_KEYS = ("name",)
ENGINE_KEYS = (
    "image",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "max_num_seqs",
    "extra_args",
    "extra_env",
)
# Engine settings that mean the same on every engine; they survive an engine switch.
NAMED_ENGINE_FIELDS = (
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "max_num_seqs",
)
BENCHMARK_KEYS = (
    "max_concurrency",
    "num_prompts",
    "random_input_len",
    "random_output_len",
    "dataset_name",
    "ignore_eos",
    "extra_args",
)
# `vllm bench serve` flags that named benchmark fields set, and those the runner sets.
BENCH_NAMED_FLAGS = {
    "--max-concurrency": "max_concurrency",
    "--num-prompts": "num_prompts",
    "--random-input-len": "random_input_len",
    "--random-output-len": "random_output_len",
    "--dataset-name": "dataset_name",
    "--ignore-eos": "ignore_eos",
}
BENCH_OWNED_FLAGS = frozenset({
    "--model", "--served-model-name", "--tokenizer", "--host", "--port", "--base-url",
    "--backend", "--endpoint", "--save-result", "--result-dir", "--result-filename",
})

MAX_GPUS = 64  # per VM; no provider sells more
MAX_TOKENS = 10_000_000  # context and prompt lengths
MAX_REQUESTS = 1_000_000  # prompts, concurrency, engine sequences

# Hugging Face `org/name`; each part starts with a letter or digit (so never `..`).
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# registry[:port]/path:tag, or @sha256:digest; lowercase path as the OCI spec asks.
IMAGE_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
# One argv word: flags, numbers, paths, JSON objects. No quotes but ", no shell syntax.
ARG_RE = re.compile(r'^[A-Za-z0-9_.,:=/+@%{}\[\]"-]{1,1000}$')
ENV_VALUE_RE = re.compile(r"^[A-Za-z0-9_.,:=/+@%{}\[\] -]*$")
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
SECRET_ENV_RE = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY")
VARIANT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DATASET_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
SHELL_CHARS = ";|&$`<>\\'!*?~#()\n\r\t"

Locate = Callable[[str], str]  # maps a dotted field to where it was written


def describe(value: object) -> str:
    """A short, safe rendering of a recipe value for an error message."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if abs(value) > 10**30:
            return f"a {value.bit_length()}-bit integer"
        return repr(value)
    type_name = {str: "string", list: "list", dict: "mapping", float: "number"}.get(
        type(value), type(value).__name__
    )
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - only for a message
        text = "?"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type_name} {text}" if type_name != "number" else text


def key_name(key: object) -> str:
    """A mapping key as it appears in a field path; odd keys (empty, not text) are quoted."""
    if isinstance(key, str) and key and key.isprintable() and len(key) <= 80:
        return key
    return describe(key) if not isinstance(key, str) else repr(key[:80])


class _Checker:
    """Field checks for one merged mapping; every failure names the file and field."""

    def __init__(self, path: str, variant: str, locate: Locate):
        self.path = path
        self.variant = variant
        self.locate = locate

    def fail(self, field: str, problem: str, hint: str | None = None) -> RecipeError:
        where = self.locate(field)
        if where == field and self.variant and field in ("gpu", "gpu_count"):
            where = f"variants.{self.variant}.{field}"  # a variant's own fields
        if where == field and self.variant:
            problem += f" (variant {self.variant})"
        return RecipeError(self.path, where, problem, hint)

    def mapping(self, value: object, field: str, allowed: tuple[str, ...]) -> dict:
        """A mapping with string keys from `allowed`; None counts as empty."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(field, f"expected a mapping, got {describe(value)}")
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                name = f"{field}.{key_name(key)}" if field else key_name(key)
                raise self.fail(
                    name, f"unknown key {describe(key)}", f"allowed: {', '.join(allowed)}"
                )
        return dict(value)

    def integer(
        self, value: object, field: str, *, maximum: int, required: bool = True
    ) -> int | None:
        """A positive int no larger than `maximum`."""
        if value is None:
            if required:
                raise self.fail(field, "missing", "expected a positive integer")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, f"expected a positive integer, got {describe(value)}")
        if value < 1:
            raise self.fail(field, f"expected a positive integer, got {describe(value)}")
        if value > maximum:
            raise self.fail(field, f"expected at most {maximum}, got {describe(value)}")
        return value

    def fraction(self, value: object, field: str) -> float | None:
        """A number in (0, 1], or None."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, f"expected a number in (0, 1], got {describe(value)}")
        if not (math.isfinite(value) and 0 < value <= 1):
            raise self.fail(field, f"expected a number in (0, 1], got {describe(value)}")
        return float(value)

    def string(self, value: object, field: str) -> str:
        if not isinstance(value, str):
            raise self.fail(field, f"expected a string, got {describe(value)}")
        return value

    def args(self, value: object, field: str, engine: str | None) -> tuple[str, ...]:
        """argv words from a string (split like a shell would) or a list of scalars."""
        if value is None:
            return ()
        if isinstance(value, str):
            if "\n" in value or "\r" in value or "\0" in value:
                raise self.fail(field, "line breaks are not allowed", "write the flags on one line")
            try:
                items: list[object] = shlex.split(value)
            except ValueError as error:
                raise self.fail(field, f"cannot split into arguments: {error}") from None
        elif isinstance(value, list):
            items = value
        else:
            raise self.fail(
                field, f"expected a string or a list of strings, got {describe(value)}"
            )

        words = []
        for index, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise self.fail(
                    f"{field}[{index}]", f"expected a string or number, got {describe(item)}"
                )
            word = str(item)
            if not ARG_RE.match(word):
                bad = sorted({char for char in word if char in SHELL_CHARS or char == " "})
                problem = f"{describe(word)} is not a plain flag or value"
                if bad:
                    problem += f" (contains {' '.join(repr(char) for char in bad)})"
                raise self.fail(
                    f"{field}[{index}]",
                    problem,
                    "use letters, digits and _.,:=/+@%{}[]\"- only; nothing here reaches a shell",
                )
            if engine is not None:
                self._refuse_named_flag(word, f"{field}[{index}]", engine)
            else:
                self._refuse_bench_flag(word, f"{field}[{index}]")
            words.append(word)
        return tuple(words)

    def _refuse_bench_flag(self, word: str, field: str) -> None:
        flag = word.split("=", 1)[0].replace("_", "-")
        if flag in BENCH_NAMED_FLAGS:
            raise self.fail(
                field,
                f"{flag} has a named field",
                f"set benchmark.{BENCH_NAMED_FLAGS[flag]} instead",
            )
        if flag in BENCH_OWNED_FLAGS:
            raise self.fail(field, f"{flag} is set by deplodock itself", "remove it")

    def _refuse_named_flag(self, word: str, field: str, engine: str) -> None:
        from deplodock_dagster.recipe.engine_flags import DEPLOY_FIELDS, covered_field

        covered = covered_field(engine, word)
        if covered is None:
            return
        flag = word.split("=", 1)[0]
        if covered in DEPLOY_FIELDS:
            raise self.fail(
                field, f"{flag} is set by deplodock itself", "remove it from extra_args"
            )
        raise self.fail(
            field,
            f"{flag} has a named field",
            f"set backend.{engine}.{covered} instead of passing {flag} in extra_args",
        )

    def env(self, value: object, field: str) -> dict[str, str]:
        """NAME -> value pairs; values are strings or numbers, on one line."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(field, f"expected a mapping NAME: value, got {describe(value)}")
        env = {}
        for name, item in value.items():
            if not isinstance(name, str) or not ENV_NAME_RE.match(name):
                raise self.fail(
                    f"{field}.{key_name(name)}",
                    f"invalid variable name {describe(name)}",
                    "expected [A-Z_][A-Z0-9_]*",
                )
            if SECRET_ENV_RE.search(name):
                raise self.fail(
                    f"{field}.{name}",
                    "looks like a secret, and recipes are stored with every result",
                    "set secrets in the environment (HF_TOKEN), not in a recipe",
                )
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise self.fail(
                    f"{field}.{name}",
                    f"expected a string or number, got {describe(item)}",
                    'quote booleans, e.g. "1" or "true"',
                )
            text = str(item)
            if any(char in text for char in "\n\r\0"):
                raise self.fail(f"{field}.{name}", "line breaks are not allowed in a value")
            if len(text) > 4096:
                raise self.fail(f"{field}.{name}", "value longer than 4096 characters")
            if not ENV_VALUE_RE.match(text):
                bad = sorted({char for char in text if not ENV_VALUE_RE.match(char)})
                raise self.fail(
                    f"{field}.{name}",
                    f"value contains {' '.join(repr(char) for char in bad)}",
                    "use letters, digits, spaces and _.,:=/+@%{}[]- only; "
                    "env files and shells would interpret the rest",
                )
            env[name] = text
        return env


def check_variant_name(path: str, name: object) -> str:
    """Variant names become task ids and folder names: [A-Za-z0-9._-], letter or digit first."""
    if not isinstance(name, str) or not VARIANT_NAME_RE.match(name):
        raise RecipeError(
            path,
            f"variants.{key_name(name)}",
            f"invalid variant name {describe(name)}",
            "expected letters, digits and ._- such as 8xH200",
        )
    return name


def build_resolved(
    *,
    path: str,
    recipe_name: str,
    variant: str,
    config: Mapping,
    sweep: tuple[tuple[str, str], ...] = (),
    locate: Locate = lambda field: field,
) -> ResolvedRecipe:
    """Check a merged mapping (base + variant + sweep point) and build its ResolvedRecipe."""
    check = _Checker(path, variant, locate)
    config = check.mapping(config, "", VARIANT_KEYS)

    description = config.get("description")
    if description is not None and not isinstance(description, str):
        raise check.fail("description", f"expected a string, got {describe(description)}")

    # Model
    if "model" not in config:
        raise check.fail("model", "missing", "expected model: {name: org/name}")
    model = check.mapping(config.get("model"), "model", MODEL_KEYS)
    model_name = model.get("name")
    if model_name is None:
        raise check.fail("model.name", "missing", "expected a Hugging Face name like org/name")
    check.string(model_name, "model.name")
    if not MODEL_NAME_RE.match(model_name):
        raise check.fail(
            "model.name",
            f"invalid model name {describe(model_name)}",
            "expected a Hugging Face name org/name of letters, digits and ._-",
        )

    engine = _engine(check, config)

    # GPU: name, count, and whole instances
    gpu = config.get("gpu")
    if gpu is None:
        raise check.fail("gpu", "missing", "every variant needs gpu, e.g. gpu: NVIDIA H200 141GB")
    check.string(gpu, "gpu")
    from deplodock_dagster.hardware import resolve_gpu_name

    try:
        gpu_name = resolve_gpu_name(gpu)
    except ConfigError as error:
        raise check.fail("gpu", str(error)) from None
    gpu_count = check.integer(config.get("gpu_count"), "gpu_count", maximum=MAX_GPUS)
    per_instance = engine.gpus_per_instance
    if per_instance > MAX_GPUS:
        raise check.fail(
            "backend", f"one instance needs {per_instance} GPUs, more than {MAX_GPUS}"
        )
    if gpu_count % per_instance:
        raise check.fail(
            "gpu_count",
            f"{gpu_count} is not a multiple of the {per_instance} GPUs one instance needs "
            f"(tensor {engine.tensor_parallel_size} x pipeline "
            f"{engine.pipeline_parallel_size} x data {engine.data_parallel_size})",
            f"use a gpu_count of {per_instance} or a multiple of it",
        )

    runtime = config.get("runtime")
    if runtime is not None and runtime not in RUNTIMES:
        raise check.fail(
            "runtime",
            f"unknown runtime {describe(runtime)}",
            f"expected one of {', '.join(RUNTIMES)}",
        )

    benchmark = _benchmark(check, config)
    needed = benchmark.random_input_len + benchmark.random_output_len
    if engine.max_model_len is not None and needed > engine.max_model_len:
        raise check.fail(
            f"backend.{engine.engine}.max_model_len",
            f"{engine.max_model_len} is shorter than random_input_len + random_output_len "
            f"= {needed}: every request would be refused",
            "raise max_model_len or shorten the benchmark requests",
        )

    return ResolvedRecipe(
        recipe_name=recipe_name,
        recipe_path=path,
        variant=variant,
        model_name=model_name,
        engine=engine,
        benchmark=benchmark,
        gpu_name=gpu_name,
        gpu_count=gpu_count,
        runtime=runtime,
        sweep=sweep,
    )


def _engine(check: _Checker, config: Mapping) -> EngineSpec:
    backend = config.get("backend")
    if backend is None:
        raise check.fail("backend", "missing", f"expected one of: {', '.join(ENGINES)}")
    backend = check.mapping(backend, "backend", ENGINES)
    if len(backend) != 1:
        names = ", ".join(backend) or "none"
        raise check.fail(
            "backend",
            f"expected exactly one engine, got {names}",
            f"name one of {', '.join(ENGINES)}",
        )
    (engine_name, settings), = backend.items()
    prefix = f"backend.{engine_name}"
    settings = check.mapping(settings, prefix, ENGINE_KEYS)

    image = settings.get("image")
    if image is None:
        image = DEFAULT_IMAGES[engine_name]
    check.string(image, f"{prefix}.image")
    if not IMAGE_RE.match(image):
        raise check.fail(
            f"{prefix}.image",
            f"invalid image {describe(image)}",
            "expected registry/path:tag of lowercase letters, digits and ._-/",
        )
    if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
        raise check.fail(
            f"{prefix}.image",
            f"image {image!r} has no tag",
            f"pin a tag, e.g. {DEFAULT_IMAGES[engine_name]}",
        )

    sizes = {
        name: check.integer(settings.get(name, 1), f"{prefix}.{name}", maximum=MAX_GPUS)
        for name in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")
    }
    env = check.env(config.get("extra_env"), "extra_env")
    env.update(check.env(settings.get("extra_env"), f"{prefix}.extra_env"))
    return EngineSpec(
        engine=engine_name,
        image=image,
        gpu_memory_utilization=check.fraction(
            settings.get("gpu_memory_utilization"), f"{prefix}.gpu_memory_utilization"
        ),
        max_model_len=check.integer(
            settings.get("max_model_len"), f"{prefix}.max_model_len",
            maximum=MAX_TOKENS, required=False,
        ),
        max_num_seqs=check.integer(
            settings.get("max_num_seqs"), f"{prefix}.max_num_seqs",
            maximum=MAX_REQUESTS, required=False,
        ),
        extra_args=check.args(settings.get("extra_args"), f"{prefix}.extra_args", engine_name),
        extra_env=tuple(sorted(env.items())),
        **sizes,
    )


def _benchmark(check: _Checker, config: Mapping) -> BenchmarkSpec:
    if config.get("benchmark") is None:
        raise check.fail(
            "benchmark",
            "missing",
            "expected max_concurrency, num_prompts, random_input_len, random_output_len",
        )
    bench = check.mapping(config.get("benchmark"), "benchmark", BENCHMARK_KEYS)
    numbers = {
        "max_concurrency": check.integer(
            bench.get("max_concurrency"), "benchmark.max_concurrency", maximum=MAX_REQUESTS
        ),
        "num_prompts": check.integer(
            bench.get("num_prompts"), "benchmark.num_prompts", maximum=MAX_REQUESTS
        ),
        "random_input_len": check.integer(
            bench.get("random_input_len"), "benchmark.random_input_len", maximum=MAX_TOKENS
        ),
        "random_output_len": check.integer(
            bench.get("random_output_len"), "benchmark.random_output_len", maximum=MAX_TOKENS
        ),
    }
    dataset = bench.get("dataset_name", "random")
    if not isinstance(dataset, str) or not DATASET_RE.match(dataset):
        raise check.fail(
            "benchmark.dataset_name", f"invalid dataset {describe(dataset)}", "e.g. random"
        )
    ignore_eos = bench.get("ignore_eos", True)
    if not isinstance(ignore_eos, bool):
        raise check.fail(
            "benchmark.ignore_eos", f"expected true or false, got {describe(ignore_eos)}"
        )
    return BenchmarkSpec(
        dataset_name=dataset,
        ignore_eos=ignore_eos,
        extra_args=check.args(bench.get("extra_args"), "benchmark.extra_args", None),
        **numbers,
    )
