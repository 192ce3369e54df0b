"""Postgres restarted during a run: the run finishes or fails cleanly, no stored result is
lost, and no VM is left.

The instance is the repository's dagster.yaml (Postgres storage from DAGSTER_PG_* variables)
on a database of its own on the local server. The run's group holds two tasks; when the
second task starts, the shared server is restarted (`pg_ctlcluster ... restart`) while the
run goes on. The ResultStore is on disk, so the first task's result must be there whatever
the event log went through. The server is checked (and started if needed) before the test
ends, since other tests use it.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from deplodock_dagster.bench.types import OUTCOME_SUCCEEDED

pytestmark = [pytest.mark.sshd, pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
PG = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]


def _cluster() -> tuple[str, str]:
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], out[1]  # version, name


def _ready() -> bool:
    return subprocess.run(["pg_isready", *PG], capture_output=True).returncode == 0


def _ensure_up(timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _ready():
            return
        version, name = _cluster()
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"],
                       capture_output=True)
        time.sleep(1)
    raise AssertionError("PostgreSQL did not come back on 127.0.0.1:5432")


@pytest.fixture
def pg_database():
    if not shutil.which("pg_ctlcluster") or not _ready():
        pytest.fail("the local PostgreSQL (127.0.0.1:5432, trust auth) is needed")
    name = f"deplodock_rel_{secrets.token_hex(4)}"
    subprocess.run(["createdb", *PG, name], check=True, capture_output=True)
    try:
        yield name
    finally:
        _ensure_up()
        subprocess.run(["dropdb", *PG, "--force", "--if-exists", name], capture_output=True)


def test_postgres_restart_mid_run_loses_no_result_and_leaves_no_vm(
        reliability_rig, reliability_row, host_faults, pg_database, tmp_path, monkeypatch):
    from dagster import DagsterInstance, DagsterRunStatus

    rig, row = reliability_rig, reliability_row
    row.fault = "Postgres (Dagster storage) restarted mid-run"
    row.expected = "run ends (success or clean failure); results on disk kept; VM deleted"
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    for name, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432",
                        "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "",
                        "DAGSTER_PG_DB": pg_database, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    rig.recipe("alpha", variants={"a": {"gpu": "NVIDIA L40S", "gpu_count": 1},
                                  "b": {"gpu": "NVIDIA L40S", "gpu_count": 1}})
    restarts: list[subprocess.CompletedProcess] = []
    restart_took: list[float] = []

    def restart_in_background():
        version, name = _cluster()

        def restart():
            started = time.monotonic()
            restarts.append(subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart",
                 "-m", "fast"], capture_output=True, text=True, timeout=120))
            restart_took.append(time.monotonic() - started)

        thread = threading.Thread(target=restart, daemon=True)
        thread.start()
        threads.append(thread)

    threads: list[threading.Thread] = []
    # Task a: deploy's stop (1), teardown's stop (2); task b starts with its stop (3).
    host_faults.add(r"deplodock-stop", skip=2, times=1, action=restart_in_background)
    instance = DagsterInstance.get()
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        first_stored = None
        run = None
        try:
            run = rig.run(["alpha"], instance=instance)
        finally:
            for thread in threads:
                thread.join(120)
            _ensure_up()
        first_stored = rig.stored().get("alpha/a")
        stored = rig.stored()
        # A fresh look at the instance once the server is back.
        fresh = DagsterInstance.get()
        record = fresh.get_run_by_id(run.run_id)
        status = record.status if record else None
        row.seen = (f"restart exit {restarts[0].returncode if restarts else 'none'} "
                    f"({restart_took[0] if restart_took else 0:.0f} s); run "
                    f"{status.value if status else 'not recorded'}; a "
                    f"{first_stored.outcome if first_stored else 'not stored'}; b "
                    f"{stored['alpha/b'].outcome if 'alpha/b' in stored else 'not stored'}")
        row.vms_leaked = len(rig.live_vms())
        row.results_lost = sum(1 for task in ("alpha/a", "alpha/b")
                               if task not in stored or stored[task].metrics is None)
        assert restarts and restarts[0].returncode == 0, restarts
        assert status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
        assert first_stored is not None and first_stored.outcome == OUTCOME_SUCCEEDED
        assert "alpha/b" in stored  # the second task ran on and was stored too
        assert rig.live_vms() == []
        # Events written after the restart reached the database.
        messages = [entry.user_message or "" for entry in fresh.all_logs(run.run_id)]
        assert any("alpha/b" in message for message in messages)
        fresh.dispose()
    finally:
        instance.dispose()
        _ensure_up()
