"""The benchmark graph and the run config that drives it.

    plan_groups ─┬─ provision_vm → run_group_tasks → delete_vm ─┐  (one branch per group)
                 └─ ...                                          ┴─ collect → finish_benchmark

Dagster does not nest dynamic outputs, so the tasks of one group run inside one op. The
graph's output is `finish_benchmark`'s (None: results live in the ResultStore); it is yielded
before the op fails the run for failed tasks, so the partitions still record what was
measured. (A graph asset may not hold an op that produces no asset, so the verdict cannot be
a sibling op.)
"""

from __future__ import annotations

from dagster import Config, ConfigMapping
from pydantic import Field

from deplodock_dagster.orchestration.ops import (
    delete_vm,
    finish_benchmark,
    plan_groups,
    provision_vm,
    run_group_tasks,
)


class BenchRunConfig(Config):
    """Run config of a benchmark run (the `benchmark_results` asset)."""

    variants: list[str] = Field(
        default=[], description="Variant names to run (e.g. 8xH200); empty runs every variant."
    )
    force: bool = Field(
        default=False, description="Run tasks again even when a result is already stored."
    )
    dry_run: bool = Field(
        default=False, description="Plan and report the groups; provision and run nothing."
    )


def _to_op_config(config: dict) -> dict:
    return {
        "plan_groups": {"config": {"variants": config["variants"], "dry_run": config["dry_run"]}},
        "run_group_tasks": {"config": {"force": config["force"]}},
    }


bench_config_mapping = ConfigMapping(
    config_fn=_to_op_config, config_schema=BenchRunConfig.to_config_schema()
)


def _run_group(state):
    return delete_vm(run_group_tasks(provision_vm(state)))


def compose_benchmark():
    """Wire the benchmark graph; returns the graph's output (see the module docstring)."""
    states = plan_groups().map(_run_group).collect()
    return finish_benchmark(states)
