"""A VM whose SSH host key changes mid-run is refused; its task fails saying so; the VM is
still deleted and the task measured before the change is kept.

The run is a real Dagster run whose group holds two tasks on one fake CloudRift VM (a
loopback sshd). Between the tasks the VM's sshd gets a new host key and restarts, as a
replaced machine or a man in the middle would look; the group runner's next connection
must refuse it (the key recorded at first contact is enforced for the whole run).
"""

from __future__ import annotations

import pytest

from deplodock_dagster.bench.types import OUTCOME_FAILED, OUTCOME_SUCCEEDED

pytestmark = [pytest.mark.sshd]


def test_host_key_changed_mid_run_is_refused_and_the_vm_deleted(
        reliability_rig, reliability_row, host_faults):
    rig, row = reliability_rig, reliability_row
    row.fault = "SSH host key changes between two tasks"
    row.expected = "second task fails naming the host key; first kept; VM deleted"
    rig.recipe("alpha", variants={"a": {"gpu": "NVIDIA L40S", "gpu_count": 1},
                                  "b": {"gpu": "NVIDIA L40S", "gpu_count": 1}})

    def rotate():
        (vm,) = [i.vm for i in rig.cloudrift.live_instances()]
        vm.rotate_host_key()  # new key, sshd restarted: every connection drops

    # Task a: deploy's stop (1), teardown's stop (2); task b starts with its stop (3).
    fault = host_faults.add(r"deplodock-stop", skip=2, times=1, action=rotate)
    run = rig.run(["alpha"])
    stored = rig.stored()
    a, b = stored.get("alpha/a"), stored.get("alpha/b")
    row.seen = (f"run {'succeeded' if run.success else 'failed'}; a "
                f"{a.outcome if a else 'not stored'}; b {b.outcome if b else 'not stored'}: "
                f"{(b.error or '').splitlines()[0][:120] if b else ''}")
    row.vms_leaked = len(rig.live_vms())
    row.results_lost = 0 if a is not None and a.metrics is not None else 1
    assert fault.fired == 1
    assert not run.success
    assert a.outcome == OUTCOME_SUCCEEDED and a.metrics is not None
    assert b.outcome == OUTCOME_FAILED
    assert "host key" in b.error and "changed" in b.error, b.error
    (instance,) = rig.cloudrift.instances.values()
    assert instance.vm.address in b.error  # names the host
    assert "alpha/b" in run.failure_text()
    assert rig.live_vms() == []
    # Nothing ran on the impostor: task b's engine never started.
    assert len(rig.standin.calls("engine")) == 1
