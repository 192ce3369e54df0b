"""The default planner: tasks for the same model on the same GPU share one VM.

Sharing a VM lets later tasks reuse the weights the first one downloaded. The VM gets the
largest gpu_count among its tasks; tasks run largest first, and a task that needs fewer
GPUs than the VM has is pinned to explicit device ids so it sees exactly its share.
"""

from __future__ import annotations

from dataclasses import replace

from deplodock_dagster.planner import BenchmarkPlanner, BenchmarkTask, ExecutionGroup


class GroupByModelAndGpuPlanner(BenchmarkPlanner):
    """Group by (model name, GPU name); see the module docstring."""

    def plan(self, tasks: list[BenchmarkTask]) -> list[ExecutionGroup]:
        buckets: dict[tuple[str, str], list[BenchmarkTask]] = {}
        for task in tasks:
            buckets.setdefault((task.model_name, task.gpu_name), []).append(task)

        groups = []
        for (_, gpu_name), members in buckets.items():
            vm_gpus = max(task.gpu_count for task in members)
            # Largest first; the stable sort keeps file order among equals.
            ordered = sorted(members, key=lambda task: -task.gpu_count)
            pinned = tuple(
                task
                if task.gpu_count == vm_gpus
                else replace(task, gpu_device_ids=tuple(range(task.gpu_count)))
                for task in ordered
            )
            groups.append(ExecutionGroup(gpu_name=gpu_name, gpu_count=vm_gpus, tasks=pinned))
        return groups
