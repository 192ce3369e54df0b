"""The package as a whole: importing it (and the CLI's parser) stays light and does no I/O.

Every library module outside orchestration/ is imported in a fresh interpreter, which must
then hold none of the heavy libraries, and must not have opened a file of the project's.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import deplodock_dagster

HEAVY = ("pandas", "paramiko", "googleapiclient", "dagster", "openpyxl", "requests")
# Modules that exist to talk to a heavy library: importing them is the point.
HEAVY_BY_DESIGN = {
    "deplodock_dagster.hosts.ssh",  # paramiko
    "deplodock_dagster.vm.gcp",  # googleapiclient
    "deplodock_dagster.vm.cloudrift",  # requests
}


def _library_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(deplodock_dagster.__path__, "deplodock_dagster."):
        if ".orchestration" in info.name or info.name.endswith("__main__"):
            continue
        if info.name in HEAVY_BY_DESIGN:
            continue
        names.append(info.name)
    return names


def test_library_modules_import_no_heavy_library_and_read_no_project_file():
    modules = _library_modules()
    assert "deplodock_dagster.deploy.cloud" in modules and "deplodock_dagster.cli" in modules
    code = (
        "import builtins, json, sys\n"
        "opened = []\n"
        "real_open = builtins.open\n"
        "def spy(file, *a, **k):\n"
        "    opened.append(str(file))\n"
        "    return real_open(file, *a, **k)\n"
        "builtins.open = spy\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "builtins.open = real_open\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'opened': opened}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=180, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    loaded = report["modules"]
    for heavy in HEAVY:
        offenders = [name for name in loaded if name.split(".")[0] == heavy]
        assert not offenders, f"importing the library loaded {heavy}"
    project_files = [path for path in report["opened"] if "recipes" in path or "results" in path]
    assert project_files == []


def test_cli_help_lists_every_area_without_heavy_imports():
    code = (
        "import contextlib, io, json, sys\n"
        "from deplodock_dagster.cli import build_parser\n"
        "parser = build_parser()\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        "        parser.parse_args(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps({'help': out.getvalue(), 'modules': sorted(sys.modules)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for command in ("deploy", "bench", "report", "vm", "recipes"):
        assert command in report["help"]
    for heavy in HEAVY:
        assert not [name for name in report["modules"] if name.split(".")[0] == heavy], heavy
