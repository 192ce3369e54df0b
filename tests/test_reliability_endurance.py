"""Endurance: 30% of cloud API calls fail transiently and SSH connections drop at random,
and a multi-group benchmark still completes every task, deleting every VM.

One Dagster run over both fake clouds (three groups: two on CloudRift, one on GCE; four
tasks) with the stand-in engine. Cloud faults are seeded (`fail_fraction`); SSH drops come
from a thread that, at seeded random moments, kills the per-connection sshd processes of a
live VM (the listener and the remote commands stay, as after a network cut), a bounded
number of times: while an engine is up (so commands are in flight), at most
MAX_DROPS_PER_VM per VM, fewer than the runner's attempts per task, so every task must get
through.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from pathlib import Path

import pytest

from deplodock_dagster.bench.types import OUTCOME_SUCCEEDED

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

MAX_DROPS = 6
MAX_DROPS_PER_VM = 2


def _sshd_sessions(listener_pid: int) -> list[int]:
    """The per-connection sshd processes below a listening sshd (not what they run)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(
                int(entry.name))
    found, queue = [], [listener_pid]
    while queue:
        for child in children.get(queue.pop(), []):
            try:
                name = Path(f"/proc/{child}/comm").read_text().strip()
            except OSError:
                continue
            if name == "sshd":
                found.append(child)
                queue.append(child)
    return found


def cut_connections(server) -> int:
    """Kill the sshd processes serving `server`'s connections, as a network cut ends them.

    The commands they ran are left to finish on their own (a real cut does not SIGKILL the
    remote side, and killing a shell mid-startup can leave stale locks behind on this
    machine, e.g. pyenv's rehash lock). Returns how many sessions were cut.
    """
    sessions = _sshd_sessions(server.process.pid)
    for pid in sessions:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(sessions)


class ConnectionDropper:
    """Drops every SSH connection of a random live VM at random moments."""

    def __init__(self, rig, seed: int, max_drops: int):
        self.rig = rig
        self.random = random.Random(seed)
        self.max_drops = max_drops
        self.drops: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _servers(self):
        servers = [i.vm for i in self.rig.cloudrift.live_instances()]
        servers += [vm for vm in self.rig.gce.vms.values()
                    if getattr(vm, "process", None) is not None]
        return [s for s in servers if getattr(s, "process", None) is not None]

    def _loop(self):
        while len(self.drops) < self.max_drops:
            if self._stop.wait(self.random.uniform(0.5, 2.5)):
                return
            if not self.rig.engines_running():
                continue  # drop while tasks run, not during the first handshake
            servers = [s for s in self._servers()
                       if self.drops.count(s.address) < MAX_DROPS_PER_VM]
            if not servers:
                continue
            server = self.random.choice(servers)
            if cut_connections(server):
                self.drops.append(server.address)


def test_bench_completes_every_task_through_cloud_and_ssh_faults(reliability_rig,
                                                                 reliability_row):
    rig, row = reliability_rig, reliability_row
    row.fault = "30% cloud API calls fail (503/429) + random SSH drops"
    row.expected = "every task succeeds; every VM deleted"
    rig.recipe("alpha", variants={"1x": {"gpu": "NVIDIA L40S", "gpu_count": 1},
                                  "2x": {"gpu": "NVIDIA L40S", "gpu_count": 2}})
    rig.recipe("beta", gpu="NVIDIA GeForce RTX 4090")
    rig.recipe("gamma", gpu="NVIDIA A100 40GB")
    rig.cloudrift.fail_fraction(0.3, seed=11, status=503)
    rig.gce.fail_fraction(0.3, seed=12, status=503)

    with ConnectionDropper(rig, seed=13, max_drops=MAX_DROPS) as dropper:
        run = rig.run(["alpha", "beta", "gamma"])
    stored = rig.stored()
    expected = ["alpha/1x", "alpha/2x", "beta/1x", "gamma/1x"]
    outcomes = {task: stored[task].outcome if task in stored else "not stored"
                for task in expected}
    failed_calls = sum(1 for c in rig.cloudrift.calls + rig.gce.calls if c.status >= 500)
    row.seen = (f"run {'succeeded' if run.success else 'failed'}; "
                f"{sum(o == OUTCOME_SUCCEEDED for o in outcomes.values())}/{len(expected)} "
                f"tasks succeeded; {failed_calls} API calls failed; "
                f"{len(dropper.drops)} SSH drops")
    row.vms_leaked = len(rig.live_vms())
    row.results_lost = sum(1 for task in expected if task not in stored)
    assert failed_calls > 5  # the faults really happened
    assert rig.live_vms() == []
    assert outcomes == {task: OUTCOME_SUCCEEDED for task in expected}, (
        {task: stored[task].error for task in expected if task in stored})
    assert run.success, run.failure_text()
