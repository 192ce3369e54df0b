"""The sshd fixtures leave no server behind, even when the test process is killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.sshd

REPO = Path(__file__).resolve().parent.parent

INNER_TEST = '''
import os, signal
from pathlib import Path

def test_start_servers(sshd, sshd_factory):
    vm = sshd_factory()
    Path({pid_file!r}).write_text(f"{{sshd.pid}} {{vm.pid}}")
    if {kill_self!r}:
        os.kill(os.getpid(), signal.SIGKILL)
'''


def _run_inner(tmp_path: Path, kill_self: bool) -> list[int]:
    pid_file = tmp_path / "pids"
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(INNER_TEST.format(pid_file=str(pid_file), kill_self=kill_self))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.fixtures.sshd",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "--basetemp", str(tmp_path / "inner-tmp"), str(test_file)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=120,
    )
    if not kill_self:
        assert result.returncode == 0, result.stdout + result.stderr
    return [int(pid) for pid in pid_file.read_text().split()]


def _gone(pid: int, wait_s: float = 10.0) -> bool:
    """True once `pid` is no longer a live sshd (the kernel may take a moment to reap)."""
    give_up = time.monotonic() + wait_s
    while time.monotonic() < give_up:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z" or b"sshd" not in cmdline:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("kill_self", [False, True], ids=["normal-exit", "sigkilled"])
def test_no_sshd_outlives_the_test_process(tmp_path, kill_self):
    pids = _run_inner(tmp_path, kill_self)
    assert len(pids) == 2
    assert all(_gone(pid) for pid in pids), f"sshd left running: {pids}"
