"""Typed recipe objects. Past the loader, nothing handles raw recipe dicts.

A recipe file (recipes/<name>/recipe.yaml) resolves to one ResolvedRecipe per variant and
per point of its `matrices` sweeps. Every value here has been validated: model names and
images are safe identifiers, flags are split into argv items, counts are positive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ENGINES = ("vllm", "sglang")
RUNTIMES = ("docker-compose", "process")


@dataclass(frozen=True)
class EngineSpec:
    """How to start the inference engine. Named fields map to each engine's own flags."""

    engine: str  # one of ENGINES
    image: str  # container image with a pinned or named tag, e.g. vllm/vllm-openai:v0.11.0
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float | None = None  # fraction of GPU memory, 0 < x <= 1
    max_model_len: int | None = None  # context length in tokens
    max_num_seqs: int | None = None  # max concurrent requests in the engine
    extra_args: tuple[str, ...] = ()  # validated argv items, never a shell string
    extra_env: tuple[tuple[str, str], ...] = ()  # (NAME, value), names are [A-Z_][A-Z0-9_]*

    @property
    def gpus_per_instance(self) -> int:
        """GPUs one engine instance uses: tensor x pipeline x data parallel."""
        return self.tensor_parallel_size * self.pipeline_parallel_size * self.data_parallel_size


@dataclass(frozen=True)
class BenchmarkSpec:
    """Parameters of `vllm bench serve` (random dataset)."""

    max_concurrency: int
    num_prompts: int
    random_input_len: int
    random_output_len: int
    dataset_name: str = "random"
    ignore_eos: bool = True
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolvedRecipe:
    """One recipe, one variant, one sweep point: everything a single benchmark task needs."""

    recipe_name: str  # the folder name under recipes/
    recipe_path: str  # path of recipe.yaml, for messages
    variant: str  # e.g. "8xH200"
    model_name: str  # Hugging Face name, e.g. "zai-org/GLM-4.6-FP8"
    engine: EngineSpec
    benchmark: BenchmarkSpec
    gpu_name: str  # full name from hardware.GPUS, e.g. "NVIDIA H200 141GB"
    gpu_count: int  # GPUs the variant uses in all
    runtime: str | None = None  # preferred runtime; the CLI or job config may override
    sweep: tuple[tuple[str, str], ...] = ()  # (parameter, value) of a matrices point

    @property
    def num_instances(self) -> int:
        """Engine instances behind the balancer: gpu_count / GPUs per instance."""
        return self.gpu_count // self.engine.gpus_per_instance

    @property
    def sweep_label(self) -> str:
        """`max_concurrency=8,num_prompts=16` for a sweep point, '' otherwise."""
        return ",".join(f"{key}={value}" for key, value in self.sweep)

    @property
    def task_id(self) -> str:
        """Stable identity of this task: recipe/variant[/sweep]."""
        base = f"{self.recipe_name}/{self.variant}"
        return f"{base}/{self.sweep_label}" if self.sweep else base

    def to_dict(self) -> dict:
        """Plain, JSON-ready form, stored with every result (holds no secret)."""
        data = asdict(self)
        data["engine"]["extra_env"] = dict(self.engine.extra_env)
        data["sweep"] = dict(self.sweep)
        data["task_id"] = self.task_id
        return data


@dataclass(frozen=True)
class Recipe:
    """A loaded recipe file: its name, path and every resolved variant and sweep point."""

    name: str
    path: str
    model_name: str
    tasks: tuple[ResolvedRecipe, ...] = field(default_factory=tuple)

    @property
    def variants(self) -> tuple[str, ...]:
        """Variant names in file order, without repeats."""
        return tuple(dict.fromkeys(task.variant for task in self.tasks))
