#!/usr/bin/env python
"""Run the reliability suite and print one table: fault, expected, seen, VMs leaked, results
lost. The goal is zero leaked VMs and zero lost results on every row.

    .venv/bin/python scripts/reliability_report.py              # the whole suite
    .venv/bin/python scripts/reliability_report.py -k delete    # rows matching -k
    .venv/bin/python scripts/reliability_report.py --json rows.json

Each reliability test fills one row (tests/fixtures/faults.py, `reliability_row`) into the
JSON-lines file named by DEPLODOCK_RELIABILITY_OUT; this script runs pytest with that set,
then reads the rows. Exit status: 0 when every row passed with nothing leaked or lost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TESTS = ["tests/test_reliability_faults.py", "tests/test_reliability_runs.py",
                 "tests/test_reliability_endurance.py", "tests/test_reliability_storage.py",
                 "tests/test_security_host_keys.py", "tests/test_security_secrets.py",
                 "tests/test_security_injection.py"]
COLUMNS = [("fault", 44), ("expected", 40), ("seen", 40), ("VMs leaked", 10),
           ("results lost", 12), ("test", 6)]


def run_suite(tests: list[str], keyword: str | None, out: Path) -> int:
    """Run pytest over `tests`, rows to `out`; returns pytest's exit code."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    if keyword:
        argv += ["-k", keyword]
    env = {**os.environ, "DEPLODOCK_RELIABILITY_OUT": str(out)}
    print(f"running: {' '.join(argv[2:])}", file=sys.stderr, flush=True)
    completed = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = completed.stdout.strip().splitlines()
    # Failures of tests that fill no row (e.g. the hypothesis tests) show here.
    for line in [line for line in lines if line.startswith(("FAILED", "ERROR"))] + lines[-1:]:
        print(f"pytest: {line}", file=sys.stderr)
    return completed.returncode


def read_rows(path: Path) -> list[dict]:
    """Rows from a JSON-lines file (as the tests write) or a JSON list (as --json writes)."""
    if not path.exists():
        return []
    text = path.read_text()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _cell(value, width: int) -> list[str]:
    text = "-" if value is None else str(value)
    return textwrap.wrap(text, width) or [""]


def format_table(rows: list[dict]) -> str:
    """A plain-text table, cells wrapped to their column width."""
    header = " | ".join(name.ljust(width) for name, width in COLUMNS)
    lines = [header, "-+-".join("-" * width for _, width in COLUMNS)]
    for row in rows:
        values = [row.get("fault"), row.get("expected"), row.get("seen"),
                  row.get("vms_leaked"), row.get("results_lost"),
                  "pass" if row.get("passed") else "FAIL"]
        cells = [_cell(value, width) for value, (_, width) in zip(values, COLUMNS)]
        for i in range(max(len(c) for c in cells)):
            lines.append(" | ".join(
                (c[i] if i < len(c) else "").ljust(width)
                for c, (_, width) in zip(cells, COLUMNS)
            ).rstrip())
    return "\n".join(lines)


def summary(rows: list[dict]) -> tuple[str, bool]:
    leaked = sum(row.get("vms_leaked") or 0 for row in rows)
    lost = sum(row.get("results_lost") or 0 for row in rows)
    failed = [row for row in rows if not row.get("passed")]
    unknown = [row for row in rows if row.get("vms_leaked") is None]
    ok = bool(rows) and not failed and leaked == 0 and lost == 0
    text = (f"{len(rows)} rows: {len(rows) - len(failed)} passed, {len(failed)} failed; "
            f"VMs leaked: {leaked}; results lost: {lost}")
    if unknown:
        text += f"; {len(unknown)} row(s) stopped before counting VMs"
    for row in failed:
        text += f"\nFAILED {row.get('test')}: {row.get('error', '')}"
    return text, ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tests", nargs="*", help=f"test files (default: {' '.join(DEFAULT_TESTS)})")
    parser.add_argument("-k", dest="keyword", help="only rows whose test matches (pytest -k)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--rows", type=Path,
                        help="print the table of a rows file (from --json); run nothing")
    args = parser.parse_args(argv)

    if args.rows:
        rows = read_rows(args.rows)
        code = 0
    else:
        tests = args.tests or [t for t in DEFAULT_TESTS if (REPO / t).exists()]
        with tempfile.TemporaryDirectory(prefix="reliability-") as folder:
            out = Path(folder) / "rows.jsonl"
            code = run_suite(tests, args.keyword, out)
            rows = read_rows(out)
    print(format_table(rows))
    text, ok = summary(rows)
    print()
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if not rows:
        print("no rows were recorded: did the tests run?", file=sys.stderr)
        return 2
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
