"""Group benchmark tasks into execution groups, one VM each.

`BenchmarkTask` is one recipe + variant (+ sweep point); `ExecutionGroup` is the tasks that
share one VM; a `BenchmarkPlanner` turns tasks into groups.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from deplodock_dagster.recipe.types import ResolvedRecipe

MAX_LABEL_LEN = 63


@dataclass(frozen=True)
class BenchmarkTask:
    """One benchmark to run: a resolved recipe, and the GPUs it may use on a shared VM."""

    recipe: ResolvedRecipe
    gpu_device_ids: tuple[int, ...] | None = None  # set when the VM has more GPUs than needed

    @property
    def task_id(self) -> str:
        return self.recipe.task_id

    @property
    def model_name(self) -> str:
        return self.recipe.model_name

    @property
    def gpu_name(self) -> str:
        return self.recipe.gpu_name

    @property
    def gpu_count(self) -> int:
        return self.recipe.gpu_count


@dataclass(frozen=True)
class ExecutionGroup:
    """Tasks that run one after another on one VM with `gpu_count` GPUs of `gpu_name`."""

    gpu_name: str
    gpu_count: int
    tasks: tuple[BenchmarkTask, ...]

    @property
    def model_name(self) -> str:
        return self.tasks[0].model_name if self.tasks else ""

    @property
    def recipe_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(task.recipe.recipe_name for task in self.tasks))

    @property
    def label(self) -> str:
        """Readable id such as `h100x8_zai_org_glm_4_6_fp8`, unique per (GPU, count, model).

        Safe as a Dagster mapping key, a VM name part and a label value: [a-z0-9_] only, at
        most 63 characters. A short GPU name shared by two GPUs (`pro6000` for the
        workstation and server editions) gets the words that tell them apart
        (`pro6000_server`), and a label cut to
        fit ends in a hash of the whole, so two groups of one plan never share a label.
        """
        from deplodock_dagster.hardware import GPUS, gpu_short_name

        short = gpu_short_name(self.gpu_name)
        siblings = [info.name for info in GPUS if info.short_name == short]
        if len(siblings) > 1:  # add the words that tell this GPU from its siblings
            common = set.intersection(*(set(_slug(name).split("_")) for name in siblings))
            own = [word for word in _slug(self.gpu_name).split("_") if word not in common]
            short = "_".join([short, *own])
        label = f"{short}x{self.gpu_count}_{_slug(self.model_name)}"
        if len(label) > MAX_LABEL_LEN:
            digest = hashlib.sha1(label.encode()).hexdigest()[:8]
            label = f"{label[:MAX_LABEL_LEN - 9].rstrip('_')}_{digest}"
        return label


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


class BenchmarkPlanner(ABC):
    """Turns a flat list of tasks into execution groups."""

    @abstractmethod
    def plan(self, tasks: list[BenchmarkTask]) -> list[ExecutionGroup]:
        """Return groups covering every task exactly once."""


from deplodock_dagster.planner.group_by_model_and_gpu import GroupByModelAndGpuPlanner  # noqa: E402

__all__ = ["BenchmarkTask", "ExecutionGroup", "BenchmarkPlanner", "GroupByModelAndGpuPlanner"]
