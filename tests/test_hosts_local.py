"""LocalHost: subprocess commands, process-group timeouts, atomic file writes."""

from __future__ import annotations

import os
import sys
import time

import pytest

from deplodock_dagster.errors import CommandFailed, HostError
from deplodock_dagster.hosts import LocalHost


@pytest.fixture
def host() -> LocalHost:
    return LocalHost()


def test_run_captures_output_and_exit_code(host):
    result = host.run(["sh", "-c", "echo out; echo err >&2; exit 4"], check=False)
    assert (result.exit_code, result.stdout, result.stderr) == (4, "out\n", "err\n")
    assert result.command == "sh -c 'echo out; echo err >&2; exit 4'"
    with pytest.raises(CommandFailed) as caught:
        host.run(["sh", "-c", "echo why >&2; exit 4"])
    assert caught.value.exit_code == 4 and "why" in str(caught.value)


def test_env_is_added_and_cwd_used(host, tmp_path):
    result = host.run(["sh", "-c", 'pwd; echo "$ADDED:$PATH"'], cwd=str(tmp_path),
                      env={"ADDED": "$(not run)"})
    assert result.stdout.splitlines() == [str(tmp_path), f"$(not run):{os.environ['PATH']}"]


def test_missing_program_is_exit_127(host):
    result = host.run(["no-such-program-xyz"], check=False)
    assert result.exit_code == 127 and "no-such-program-xyz" in result.stderr
    with pytest.raises(CommandFailed):
        host.run(["no-such-program-xyz"])


def test_on_output_streams_lines(host):
    lines: list[str] = []
    code = "import sys\nfor i in range(3): print(i, flush=True)\nsys.stderr.write('e\\nlast')"
    result = host.run([sys.executable, "-c", code], on_output=lines.append)
    assert sorted(lines) == ["0", "1", "2", "e", "last"]
    assert lines.index("0") < lines.index("1") < lines.index("2")
    assert result.stdout == "0\n1\n2\n" and result.stderr == "e\nlast"


def test_timeout_kills_the_whole_process_group(host, tmp_path):
    pid_file = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pid_file}; wait"
    with pytest.raises(HostError) as caught:
        host.run(["bash", "-c", script], timeout_s=1)
    assert "timed out after 1s" in str(caught.value) and "sleep 30" in str(caught.value)
    child = int(pid_file.read_text())
    # A killed process is gone once the kernel next schedules it: allow for a busy machine.
    give_up = time.monotonic() + 10
    while _alive(child) and time.monotonic() < give_up:
        time.sleep(0.05)
    assert not _alive(child), "the background child outlived the timeout"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_injection_payloads_are_plain_arguments(host, tmp_path):
    canary = tmp_path / "canary"
    payloads = [f"$(touch {canary})", f"`touch {canary}`", f"; touch {canary}", "a\nb"]
    result = host.run(["printf", "%s\\0", *payloads])
    assert result.stdout.split("\0")[:-1] == payloads
    assert not canary.exists()


def test_write_and_read_file(host, tmp_path):
    target = tmp_path / "a" / "b" / "secret.env"
    host.write_file(str(target), "K=V\n", mode=0o600)
    assert target.read_text() == "K=V\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    host.write_file(str(target), b"\x00\x01", mode=0o644)
    assert host.read_file(str(target)) == b"\x00\x01"
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in target.parent.iterdir()] == ["secret.env"]
    assert host.file_exists(str(target)) and not host.file_exists(str(tmp_path / "nope"))


def test_read_missing_file_names_it(host, tmp_path):
    with pytest.raises(HostError, match="cannot read .*nope"):
        host.read_file(str(tmp_path / "nope"))


def test_write_into_a_file_path_fails_clearly(host, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HostError, match="cannot write"):
        host.write_file(str(blocker / "child"), "y")


def test_importing_hosts_does_not_import_paramiko():
    code = (
        "import sys, deplodock_dagster.hosts as h\n"
        "assert h.connect and h.LocalHost and h.DryRunHost\n"
        "print('paramiko' in sys.modules)"
    )
    result = LocalHost().run([sys.executable, "-c", code])
    assert result.stdout == "False\n"


def test_streamed_lines_are_redacted(host):
    from deplodock_dagster.secrets import register_secret

    token = register_secret("hf_streamed_secret_0042")
    lines: list[str] = []
    result = host.run(["echo", f"token={token}"], on_output=lines.append)
    assert lines == ["token=***"]
    assert result.stdout == f"token={token}\n"  # the captured output stays exact
