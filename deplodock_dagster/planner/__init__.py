"""Group benchmark tasks into execution groups, one VM each.

`BenchmarkTask` is one recipe + variant (+ sweep point); `ExecutionGroup` is the tasks that
share one VM; a `BenchmarkPlanner` turns tasks into groups.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from deplodock_dagster.recipe.types import ResolvedRecipe


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
        """Readable, unique-per-plan id such as `h100x8_zai_org_glm_4_6_fp8`.

        Safe as a Dagster mapping key, a VM name part and a label value: [a-z0-9_] only.
        """
        from deplodock_dagster.hardware import gpu_short_name

        model = re.sub(r"[^a-z0-9]+", "_", self.model_name.lower()).strip("_")
        return f"{gpu_short_name(self.gpu_name)}x{self.gpu_count}_{model}"[:63]


class BenchmarkPlanner(ABC):
    """Turns a flat list of tasks into execution groups."""

    @abstractmethod
    def plan(self, tasks: list[BenchmarkTask]) -> list[ExecutionGroup]:
        """Return groups covering every task exactly once."""


from deplodock_dagster.planner.group_by_model_and_gpu import GroupByModelAndGpuPlanner  # noqa: E402

__all__ = ["BenchmarkTask", "ExecutionGroup", "BenchmarkPlanner", "GroupByModelAndGpuPlanner"]
