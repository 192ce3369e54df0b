"""What travels between the ops of one execution group: the group, its VM, its results.

Plain data only (the VM as `VMConnectionInfo.to_dict()`, which holds no password; results as
`TaskResult.to_dict()`), because with the multiprocess executor every value between ops is
pickled to storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from deplodock_dagster.planner import ExecutionGroup


@dataclass(frozen=True)
class GroupState:
    """One execution group on its way through provision → tasks → delete."""

    group: ExecutionGroup
    vm: dict | None = None  # VMConnectionInfo.to_dict(), None until provisioned
    provision_error: str | None = None
    results: tuple[dict, ...] = field(default_factory=tuple)  # TaskResult.to_dict() each
    vm_deleted: bool = False
    delete_error: str | None = None

    @property
    def label(self) -> str:
        return self.group.label

    @property
    def vm_name(self) -> str:
        return self.vm["name"] if self.vm else ""

    def with_(self, **changes) -> GroupState:
        """A copy with `changes` applied."""
        return replace(self, **changes)

    def failed_tasks(self) -> list[tuple[str, str]]:
        """(task id, error) for every task of the group that did not succeed or skip."""
        from deplodock_dagster.bench.types import OUTCOME_FAILED

        if self.provision_error:
            return [(task.task_id, f"no VM: {self.provision_error}") for task in self.group.tasks]
        failed = [
            (result["task_id"], result.get("error") or "failed")
            for result in self.results
            if result.get("outcome") == OUTCOME_FAILED
        ]
        reported = {result["task_id"] for result in self.results}
        failed += [
            (task.task_id, "no result was reported")
            for task in self.group.tasks
            if task.task_id not in reported
        ]
        return failed
