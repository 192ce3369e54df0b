"""The real dagster-webserver and dagster-daemon on the repository's dagster.yaml (Postgres).

One throwaway database per test run on the local PostgreSQL. The test checks what a user
sees: the schedule and sensors are running, the recipes sensor fills the partitions, and a
submitted run waits in the queue until the daemon launches it, then completes.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.postgres, pytest.mark.dagster_daemon]

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
LOCATION = "deplodock"
REPOSITORY = "__repository__"


@pytest.fixture
def pg_database():
    """A fresh, empty database name; dropped afterwards."""
    import psycopg2

    name = f"deplodock_test_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(dbname="postgres", **PG)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield name
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dagster_services(pg_database, tmp_path):
    """Webserver and daemon from the repository's dagster.yaml; yields (url, env)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    recipes = tmp_path / "recipes"
    shutil.copytree(REPO / "recipes" / "tiny-cpu", recipes / "tiny-cpu")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": PG["host"], "DAGSTER_PG_PORT": str(PG["port"]),
        "DAGSTER_PG_USER": PG["user"], "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": pg_database,
        "DEPLODOCK_RECIPES_DIR": str(recipes),
        "DEPLODOCK_RESULTS_DIR": str(tmp_path / "results"),
        "DEPLODOCK_REPORTS_DIR": str(tmp_path / "reports"),
        "DEPLODOCK_RECIPES_SENSOR_INTERVAL_S": "5",
    }
    port = _free_port()
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("webserver", "daemon")}
    commands = {
        "webserver": [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h",
                      "127.0.0.1", "-p", str(port)],
        "daemon": [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
    }
    processes = {
        name: subprocess.Popen(argv, cwd=REPO, env=env, stdout=logs[name],
                               stderr=subprocess.STDOUT, start_new_session=True)
        for name, argv in commands.items()
    }
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(lambda: _up(url), 180, "webserver", tmp_path / "webserver.log")
        yield url, env, tmp_path
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for handle in logs.values():
            handle.close()


def _up(url: str) -> bool:
    try:
        return requests.get(f"{url}/server_info", timeout=5).ok
    except requests.RequestException:
        return False


def _wait_until(predicate, timeout_s: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    pytest.fail(f"{what}: not ready after {timeout_s:.0f}s\n{tail}")


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}},
                             timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}

SCHEDULES = """
query($selector: RepositorySelector!) {
  schedulesOrError(repositorySelector: $selector) {
    __typename
    ... on Schedules { results { name cronSchedule executionTimezone
                                 scheduleState { status } } }
  }
}"""

SENSORS = """
query($selector: RepositorySelector!) {
  sensorsOrError(repositorySelector: $selector) {
    __typename
    ... on Sensors { results { name sensorState { status } } }
  }
}"""

RUN_EVENTS = """
query($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename } }
  }
}"""


def test_webserver_and_daemon_on_postgres_run_the_schedule_sensors_and_queue(dagster_services):
    from dagster import DagsterRunStatus
    from dagster_graphql import DagsterGraphQLClient

    url, env, tmp_path = dagster_services

    schedules = _graphql(url, SCHEDULES, {"selector": SELECTOR})["schedulesOrError"]
    assert schedules["__typename"] == "Schedules", schedules
    nightly = {s["name"]: s for s in schedules["results"]}["nightly_benchmarks"]
    assert nightly["scheduleState"]["status"] == "RUNNING"
    assert nightly["executionTimezone"] == "UTC"
    sensors = _graphql(url, SENSORS, {"selector": SELECTOR})["sensorsOrError"]["results"]
    assert {s["name"]: s["sensorState"]["status"] for s in sensors} == {
        "recipes_sensor": "RUNNING", "delete_vms_of_failed_runs": "RUNNING",
        "delete_vms_of_canceled_runs": "RUNNING", "reconcile_vms_sensor": "RUNNING"}

    # The daemon's sensor loop fills the partitions from the recipes folder.
    instance_env = {key: env[key] for key in env if key.startswith(("DAGSTER_",))}
    os.environ.update(instance_env)
    try:
        from dagster import DagsterInstance

        with DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            _wait_until(lambda: instance.get_dynamic_partitions("recipes") == ["tiny-cpu"],
                        120, "recipes sensor", tmp_path / "daemon.log")

            # A run submitted through the webserver is queued, then launched by the daemon.
            client = DagsterGraphQLClient("127.0.0.1", port_number=int(url.rsplit(":", 1)[1]))
            run_id = client.submit_job_execution(
                "benchmark_job",
                repository_location_name=LOCATION,
                repository_name=REPOSITORY,
                run_config={"ops": {"benchmark_results": {"config": {"dry_run": True}}}},
                tags={"dagster/asset_partition_range_start": "tiny-cpu",
                      "dagster/asset_partition_range_end": "tiny-cpu"},
            )
            status = _wait_until(
                lambda: (s := client.get_run_status(run_id)) in (
                    DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE,
                    DagsterRunStatus.CANCELED) and s,
                240, "queued run", tmp_path / "daemon.log")
            assert status == DagsterRunStatus.SUCCESS
            events = _graphql(url, RUN_EVENTS, {"runId": run_id})["logsForRun"]["events"]
            kinds = [event["__typename"] for event in events]
            # Queued first (QueuedRunCoordinator), then started by the daemon's run queue.
            assert kinds.index("RunEnqueuedEvent") < kinds.index("RunStartingEvent")
            assert kinds.index("RunStartingEvent") < kinds.index("RunStartEvent")
            logs = [entry.user_message for entry in instance.all_logs(run_id)]
            assert any("planned 1 task(s) of 1 recipe(s) into 1 group(s)" in line
                       for line in logs)
    finally:
        for key in instance_env:
            os.environ.pop(key, None)
