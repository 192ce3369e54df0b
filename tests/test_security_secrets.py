"""Secret hygiene: a full benchmark run with known secrets, then every output is scanned.

The run is a real Dagster run over the fake CloudRift (API key, and a VM password in its
login info), the loopback sshd VMs and the stand-in engine, with an HF token. One recipe
succeeds on the process runtime; a second uses docker compose (a fake `docker` on the host's
PATH) and fails at the health check, so failure paths are scanned too. Then the report asset
is materialized. Scanned: Python logs at DEBUG, captured stdout/stderr, the Dagster event
log and run record, the result store, the report workbooks, and every file written on the
host, where only the 0600 env file may hold the token.
"""

from __future__ import annotations

import logging
import secrets
import stat
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sshd]


def _texts_of_tree(root: Path, skip: set[Path] = frozenset()) -> dict[str, bytes]:
    """path -> content of every file under `root` (workbooks unzipped)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path in skip:
            continue
        data = path.read_bytes()
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as book:
                for member in book.namelist():
                    found[f"{path}!{member}"] = book.read(member)
        else:
            found[str(path)] = data
    return found


def _hits(secret_values: dict[str, str], texts: dict[str, bytes]) -> list[str]:
    hits = []
    for where, data in texts.items():
        for label, value in secret_values.items():
            if value.encode() in data:
                hits.append(f"{label} in {where}")
    return hits


def test_no_secret_in_logs_events_results_reports_or_host_files(
        reliability_rig, reliability_row, host_faults, caplog, capfd):
    from dagster import materialize
    from dagster._serdes import serialize_value

    from deplodock_dagster.orchestration.assets import benchmark_report
    from deplodock_dagster.orchestration.resources import (
        BenchSettingsResource,
        ReportResource,
        ResultStoreResource,
    )

    caplog.set_level(logging.DEBUG)
    rig = reliability_rig
    rig.hf_token = f"hf_{secrets.token_hex(16)}"
    rig.runtime = None  # each recipe's own runtime
    rig.health_timeout_s = 4
    host_faults.path_prefix = str(rig.standin.docker_bin)
    rig.recipe("alpha")  # process runtime: succeeds
    rig.recipe("beta", gpu="NVIDIA GeForce RTX 4090", extra={"runtime": "docker-compose"})

    run = rig.run(["alpha", "beta"])
    report = materialize(
        [benchmark_report],
        resources={
            "results": ResultStoreResource(root_dir=str(rig.results_dir)),
            "report": ReportResource(out_dir=str(rig.reports_dir)),
            "bench": BenchSettingsResource(hf_token=rig.hf_token),
        },
        instance=run.instance,
    )
    stored = rig.stored()
    assert stored["alpha/1x"].outcome == "succeeded"
    assert stored["beta/1x"].outcome == "failed"  # compose engine never answers
    assert not run.success and report.success
    passwords = [i.password for i in rig.cloudrift.instances.values()]
    assert len(passwords) == 2
    secret_values = {"HF token": rig.hf_token, "CloudRift API key": rig.cloudrift.api_key,
                     **{f"VM password {i}": pw for i, pw in enumerate(passwords)}}

    texts: dict[str, bytes] = {}
    texts["python logs"] = "\n".join(
        [caplog.text] + [record.getMessage() for record in caplog.records]
    ).encode()
    captured = capfd.readouterr()
    texts["stdout"] = captured.out.encode()
    texts["stderr"] = captured.err.encode()
    for result in (run.result, report):
        entries = run.instance.all_logs(result.run_id)
        assert entries
        texts[f"event log of {result.run_id}"] = "\n".join(
            serialize_value(entry) for entry in entries).encode()
        texts[f"run record {result.run_id}"] = serialize_value(
            run.instance.get_run_by_id(result.run_id)).encode()
    texts.update(_texts_of_tree(rig.results_dir))
    texts.update(_texts_of_tree(rig.reports_dir))
    env_file = rig.deploy_dir / ".env"
    texts.update(_texts_of_tree(rig.deploy_dir, skip={env_file}))

    assert any(path.endswith(".xlsx!xl/workbook.xml") for path in texts)
    assert any(path.endswith("docker-compose.yml") for path in texts)
    assert any(path.endswith("deploy_spec.txt") for path in texts)
    hits = _hits(secret_values, texts)
    row = reliability_row
    row.fault = "known HF token, API key, VM passwords in a full run"
    row.expected = "0 hits in logs, events, results, reports, host files"
    row.seen = f"{len(hits)} hits in {len(texts)} files and streams; .env 0600 holds the token"
    row.vms_leaked = len(rig.live_vms())
    row.results_lost = 0 if stored["alpha/1x"].metrics else 1
    assert hits == []
    # The env file is where the token belongs: readable by its owner only.
    assert rig.hf_token in env_file.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    # The redaction did something: the engine saw the token (through the env file).
    engine_env = rig.standin.calls("engine")[-1]["env"]
    assert engine_env.get("HF_TOKEN") == rig.hf_token
    assert rig.live_vms() == []
