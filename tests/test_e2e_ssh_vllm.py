"""End to end over a real loopback sshd with real vLLM on the CPU and real `vllm bench serve`.

One module-scoped run holds the machine-wide vLLM lock and runs, through `run_group_tasks`
over SSH with the process runtime:

- `cpu`: the tiny-cpu recipe as written: deploy, benchmark, teardown, result stored;
- `bench-fails`: a context (max_model_len 128) shorter than the prompts (256 tokens), so
  every benchmark request is refused: a failed outcome with the numbers kept;
- `engine-dies`: an engine flag vLLM does not know, so the engine exits while starting;

then, through `run_task`, `never-healthy`: a 3 s health deadline the engine cannot meet.
While the first engine is starting, every SSH connection to the server is cut (as a network
cut would: the detached engine lives on) and the task must still succeed.
Two full engine starts in all; the other two die or are stopped within seconds. A known fake
HF token is set throughout and must appear in no stored file and no log.
"""

from __future__ import annotations

import fcntl
import json
import logging
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from deplodock_dagster.bench.group import run_group_tasks
from deplodock_dagster.bench.runner import run_task
from deplodock_dagster.bench.settings import BenchSettings
from deplodock_dagster.bench.store import ResultStore
from deplodock_dagster.hosts.ssh import SSHHost
from deplodock_dagster.planner import BenchmarkTask, ExecutionGroup
from deplodock_dagster.recipe import RECIPES_DIR, resolve_variant
from deplodock_dagster.vm.types import VMConnectionInfo
from tests.fixtures.engine import VLLM_LOCK_PATH
from tests.fixtures.sshd import SSHServer, _descendants, free_port

pytestmark = [pytest.mark.vllm, pytest.mark.sshd]

FAKE_TOKEN = "hf_E2EfakeTokenDoNotLeak0123456789"
SERVED_NAME = "deplodock/tiny-llama"


def _engine_pids(port: int) -> list[str]:
    """Live processes serving the tiny model on `port` (zombies have no cmdline)."""
    pattern = f"--served-model-name {SERVED_NAME} --host 0.0.0.0 --port {port}"
    found = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
    return found.stdout.split()


class _ConnectionCutter(threading.Thread):
    """Cuts every SSH connection of `server` once the engine on `port` runs on its own.

    "On its own": the engine's parent is no longer below sshd (the launcher exited, and its
    reply is long delivered: the engine has begun to log), so the cut hits the deploy's
    session, not the engine. Event-driven, not timed.
    """

    def __init__(self, server: SSHServer, port: int, engine_log: Path):
        super().__init__(daemon=True)
        self.server, self.port, self.engine_log = server, port, engine_log
        self.stop = threading.Event()
        self.killed = 0

    def _engine_detached(self) -> bool:
        if not self.engine_log.exists() or self.engine_log.stat().st_size == 0:
            return False
        below_sshd = set(_descendants(self.server.pid))
        for pid in _engine_pids(self.port):
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ValueError):
                continue
            if int(pid) not in below_sshd and ppid not in below_sshd:
                return True
        return False

    def run(self):
        while not self.stop.wait(0.2):
            if self._engine_detached():
                self.killed = self.server.drop_connections()
                return


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def e2e_sshd(tmp_path_factory, ssh_client_key):
    """An OpenSSH server of this module's own: its connections get cut."""
    public = ssh_client_key.with_name(ssh_client_key.name + ".pub").read_text()
    server = SSHServer(tmp_path_factory.mktemp("e2e-sshd"), "127.0.0.1", free_port(), public,
                       ssh_client_key)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, e2e_sshd, engine_python, model_root, tiny_model_dir):
    """Run every scenario once under the vLLM lock; tests read what it left."""
    sshd = e2e_sshd
    work = tmp_path_factory.mktemp("e2e")
    port = free_port()
    settings = BenchSettings(
        results_dir=str(work / "results"),
        model_dir=str(model_root),
        hf_token=FAKE_TOKEN,
        runtime="process",
        engine_python=str(engine_python),
        deploy_dir=str(work / "deploy"),
        port=port,
        health_timeout_s=300,
        bench_timeout_s=600,
        ssh_key_path=str(sshd.key_path),
        known_hosts_path=str(sshd.known_hosts_path),
    )
    store = ResultStore(settings.results_dir)
    base = resolve_variant(RECIPES_DIR / "tiny-cpu", "cpu")[0]
    recipes = {
        "cpu": base,
        "bench-fails": replace(
            base, variant="bench-fails",
            engine=replace(base.engine, max_model_len=128),
            benchmark=replace(base.benchmark, random_input_len=256, num_prompts=8),
        ),
        "engine-dies": replace(
            base, variant="engine-dies",
            engine=replace(base.engine, extra_args=("--no-such-flag",)),
        ),
    }
    group = ExecutionGroup(gpu_name=base.gpu_name, gpu_count=1,
                           tasks=tuple(BenchmarkTask(r) for r in recipes.values()))
    conn = VMConnectionInfo(
        provider="fixed", instance_id="loopback", name="loopback-sshd", host=sshd.address,
        ssh_port=sshd.port, username=sshd.username, delete_info={"provider": "fixed"},
    )

    capture = _Capture()
    capture.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    left_running: dict[str, list[str]] = {}
    lock = open(VLLM_LOCK_PATH, "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    cutter = _ConnectionCutter(sshd, port, work / "deploy" / "engine.log")
    try:
        cutter.start()
        results = {
            r.variant: r
            for r in run_group_tasks(
                group, conn, settings, store, run_id="e2e-run",
                on_result=lambda r: left_running.__setitem__(r.variant, _engine_pids(port)),
            )
        }
        never = replace(base, variant="never-healthy")
        with SSHHost(sshd.address, sshd.port, sshd.username, sshd.key_path,
                     known_hosts_path=sshd.known_hosts_path) as host:
            results["never-healthy"] = run_task(
                BenchmarkTask(never), host, replace(settings, health_timeout_s=3), store,
                "e2e-run",
            )
        left_running["never-healthy"] = _engine_pids(port)
    finally:
        cutter.stop.set()
        cutter.join()
        for pid in _engine_pids(port):  # never leave an engine behind, whatever failed
            subprocess.run(["kill", "-KILL", pid], check=False)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
        root.removeHandler(capture)
        root.setLevel(old_level)
    return {
        "results": results, "store": store, "settings": settings, "work": work,
        "left_running": left_running, "logs": capture.lines, "sshd": sshd,
        "connections_cut": cutter.killed,
    }


def test_tiny_model_benchmark_succeeds_and_every_request_completed(e2e):
    result = e2e["results"]["cpu"]
    assert result.outcome == "succeeded", result.error
    folder = e2e["store"].task_dir(result.task_id)
    stored = json.loads((folder / "result.json").read_text())
    assert stored["outcome"] == "succeeded"
    raw = json.loads((folder / "cpux1_vllm_benchmark.json").read_text())
    assert raw["num_prompts"] == 32
    assert raw["completed"] == 32 and raw["failed"] == 0
    assert "Serving Benchmark Result" in (folder / "cpux1_vllm_benchmark.txt").read_text()
    assert result.metrics.successful_requests == 32
    assert result.metrics.output_throughput_tok_s > 0
    assert set(result.timings_s) == {"deploy", "benchmark", "teardown"}
    assert result.host_facts["engine"].startswith("vllm ")
    assert result.host_facts["cpu_count"]
    assert "--served-model-name deplodock/tiny-llama" in result.deploy_spec
    assert result.run_id == "e2e-run"


def test_cut_ssh_connections_while_the_engine_starts_do_not_fail_the_task(e2e):
    assert e2e["connections_cut"] >= 1  # the cut happened (during the first deploy)
    assert e2e["results"]["cpu"].outcome == "succeeded"


def test_no_engine_is_left_after_any_task(e2e):
    assert e2e["left_running"] == {
        "cpu": [], "bench-fails": [], "engine-dies": [], "never-healthy": [],
    }
    deploy_dir = Path(e2e["settings"].deploy_dir)
    assert not (deploy_dir / "engine.pid").exists()


def test_benchmark_with_refused_requests_is_a_failed_outcome_with_numbers(e2e):
    result = e2e["results"]["bench-fails"]
    assert result.outcome == "failed"
    assert "benchmark incomplete: 0 of 8 requests completed, 8 failed" in result.error
    assert result.metrics is not None and result.metrics.failed_requests == 8
    folder = e2e["store"].task_dir(result.task_id)
    assert json.loads((folder / "cpux1_vllm_benchmark.json").read_text())["failed"] == 8
    assert (folder / "engine.log").read_text().strip()


def test_engine_that_exits_while_starting_fails_with_its_log(e2e):
    result = e2e["results"]["engine-dies"]
    assert result.outcome == "failed"
    assert "exited while starting" in result.error
    assert "--no-such-flag" in result.engine_log_tail
    folder = e2e["store"].task_dir(result.task_id)
    assert "--no-such-flag" in (folder / "engine.log").read_text()
    assert result.metrics is None


def test_engine_that_never_becomes_healthy_is_stopped(e2e):
    result = e2e["results"]["never-healthy"]
    assert result.outcome == "failed"
    assert "did not become healthy within 3 s" in result.error
    assert e2e["store"].has(result.task_id)
    assert "teardown" in result.timings_s


def test_stored_task_is_not_run_again_unless_forced(e2e):
    store, settings = e2e["store"], e2e["settings"]
    task = BenchmarkTask(resolve_variant(RECIPES_DIR / "tiny-cpu", "cpu")[0])
    sshd = e2e["sshd"]
    with SSHHost(sshd.address, sshd.port, sshd.username, sshd.key_path,
                 known_hosts_path=sshd.known_hosts_path) as host:
        again = run_task(task, host, settings, store, "e2e-rerun")
    assert again.outcome == "skipped"
    assert store.load(task.task_id).run_id == "e2e-run"  # the stored result is untouched


def test_the_hf_token_appears_in_no_stored_file_and_no_log(e2e):
    work: Path = e2e["work"]
    leaks = []
    for path in work.rglob("*"):
        if not path.is_file():
            continue
        if path.name == ".env":  # the one place the token belongs: mode 0600
            assert oct(path.stat().st_mode & 0o777) == "0o600"
            assert FAKE_TOKEN in path.read_text()
            continue
        if FAKE_TOKEN.encode() in path.read_bytes():
            leaks.append(str(path))
    assert leaks == []
    assert e2e["logs"], "no log lines were captured"
    assert not [line for line in e2e["logs"] if FAKE_TOKEN in line]
    sshd_log = Path(e2e["sshd"].log_path)
    if sshd_log.exists():
        assert FAKE_TOKEN not in sshd_log.read_text(errors="replace")
    for result in e2e["results"].values():
        assert FAKE_TOKEN not in json.dumps(result.to_dict())
