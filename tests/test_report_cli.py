"""`deplodock report` end to end, as a user runs it (a subprocess of the console script)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook

ARCHIVE = "deplodock-results-2025-11"


def deplodock(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "deplodock"
    command = [str(script)] if script.exists() else [sys.executable, "-m",
                                                     "deplodock_dagster.cli"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEPLODOCK_")}
    clean.update(env or {})
    return subprocess.run(
        [*command, "report", *args], cwd=cwd, env=clean, capture_output=True, text=True,
        timeout=120,
    )


def rows_of(path: Path) -> list[dict]:
    rows = list(load_workbook(path).active.iter_rows(values_only=True))
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def test_defaults_from_environment_and_parent_prices(fixtures_dir, tmp_path):
    results = fixtures_dir / ARCHIVE / "single-query"
    run = deplodock(cwd=tmp_path, env={"DEPLODOCK_RESULTS_DIR": str(results)})
    assert run.returncode == 0, run.stderr
    assert f"Prices: {fixtures_dir / ARCHIVE / 'pricing.yaml'}" in run.stdout
    assert "| zai-org/GLM-4.6 | 8xH200 | 1 | 149.00 |" in run.stdout
    written = sorted(p.name for p in (tmp_path / "reports").glob("*.xlsx"))
    assert written == sorted(p.name for p in results.glob("benchmark_report*.xlsx"))
    rows = rows_of(tmp_path / "reports" / "benchmark_report_zai-org_GLM-4.6.xlsx")
    assert len(rows) == 1
    assert rows[0]["Machine"] == "8xH200"
    assert rows[0]["Token Price ($/mtok)"] == pytest.approx(27.12 / (149 * 3600) * 1e6)


def test_missing_price_is_named_and_numbers_are_kept(fixtures_dir, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("pricing:\n  h100: 2.69\n")
    run = deplodock("--results", str(fixtures_dir / ARCHIVE), "--prices", str(prices),
                    "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    for gpu in ("h200", "pro6000"):
        assert f"no price for GPU '{gpu}' in {prices}" in run.stderr
    rows = rows_of(tmp_path / "out" / "benchmark_report.xlsx")
    assert len(rows) == 9
    for row in rows:
        assert row["Throughput (tok/s)"] > 0
        if row["Machine"] == "8xH100":
            assert row["Token Price ($/mtok)"] > 0
        else:
            assert row["GPU Price ($/hour)"] is None
            assert row["Token Price ($/mtok)"] is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--results", "no-such-dir"], "results folder no-such-dir does not exist"),
        (["--prices", "no-such.yaml"], "no-such.yaml: cannot read prices file"),
    ],
)
def test_bad_input_is_one_clear_line(fixtures_dir, tmp_path, args, message):
    if "--results" not in args:
        args = ["--results", str(fixtures_dir / ARCHIVE), *args]
    run = deplodock(*args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert run.returncode == 2
    assert f"deplodock: error: {message}" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()


def test_quiet_prints_the_paths(fixtures_dir, tmp_path):
    run = deplodock("--results", str(fixtures_dir / ARCHIVE), "--out", str(tmp_path),
                    "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"wrote {tmp_path / 'benchmark_report.xlsx'}"
    assert len(lines) == 4 and all(line.startswith("wrote ") for line in lines)


def test_help(tmp_path):
    run = deplodock("--help", cwd=tmp_path)
    assert run.returncode == 0
    for option in ("--results", "--prices", "--out", "DEPLODOCK_RESULTS_DIR", "$/Mtok"):
        assert option in run.stdout
