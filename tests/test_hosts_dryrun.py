"""DryRunHost: records commands and writes in order, runs nothing."""

from __future__ import annotations

import io

import pytest

from deplodock_dagster.errors import CommandFailed, HostError
from deplodock_dagster.hosts import DryRunHost
from deplodock_dagster.secrets import register_secret


def test_transcript_records_commands_and_writes_in_order(tmp_path):
    host = DryRunHost()
    canary = tmp_path / "canary"
    host.run(["mkdir", "-p", "/srv/deploy"])
    host.write_file("/srv/deploy/docker-compose.yml", "services: {}\n")
    host.write_file("/srv/deploy/.env", "HF_TOKEN=x\n", mode=0o600)
    host.run(["docker", "compose", "up", "-d", "--wait"], cwd="/srv/deploy",
             env={"COMPOSE_PROJECT_NAME": "a b"})
    host.run(["touch", str(canary)])

    assert host.transcript() == [
        "$ mkdir -p /srv/deploy",
        "write /srv/deploy/docker-compose.yml (0644)",
        "write /srv/deploy/.env (0600)",
        "$ cd /srv/deploy && env 'COMPOSE_PROJECT_NAME=a b' docker compose up -d --wait",
        f"$ touch {canary}",
    ]
    assert not canary.exists()  # nothing ran

    out = io.StringIO()
    host.print_transcript(with_content=True, file=out)
    assert "write /srv/deploy/.env (0600)\n    HF_TOKEN=x\n" in out.getvalue()


def test_secrets_are_redacted_in_commands_and_contents():
    token = register_secret("hf_dryrun_secret_value_123")
    host = DryRunHost()
    host.run(["echo", token])
    host.write_file("/x/.env", f"HF_TOKEN={token}\n", 0o600)
    host.write_file("/x/blob", b"\xff\xfe")
    text = "\n".join(host.transcript(with_content=True))
    assert token not in text
    assert "$ echo ***" in text and "HF_TOKEN=***" in text
    assert host.writes[-1].content == "<2 bytes of binary data>"
    # The real bytes stay readable for code that reads back what it wrote.
    assert host.read_file("/x/.env") == f"HF_TOKEN={token}\n".encode()


def test_canned_outputs_longest_prefix_wins():
    host = DryRunHost(outputs={
        "docker": "generic",
        "docker compose version": "Docker Compose version v2.29.1",
        "nvidia-smi": (9, "no devices"),
    })
    lines: list[str] = []
    result = host.run(["docker", "compose", "version"], on_output=lines.append)
    assert result.stdout == "Docker Compose version v2.29.1"
    assert lines == ["Docker Compose version v2.29.1"]
    assert host.run(["docker", "ps"]).stdout == "generic"
    assert host.run(["uname"]).stdout == "" and host.run(["uname"]).ok
    assert host.run(["nvidia-smi"], check=False).exit_code == 9
    with pytest.raises(CommandFailed, match="no devices"):
        host.run(["nvidia-smi"])


def test_files_given_and_missing():
    host = DryRunHost(files={"/etc/os-release": "ID=debian\n"})
    assert host.file_exists("/etc/os-release") and not host.file_exists("/nope")
    assert host.read_file("/etc/os-release") == b"ID=debian\n"
    with pytest.raises(HostError, match="/nope"):
        host.read_file("/nope")


def test_a_program_name_that_a_shell_would_read_as_an_assignment_is_refused():
    host = DryRunHost()
    with pytest.raises(ValueError, match="contains '='"):
        host.run(["X=1", "touch", "/tmp/x"])
    assert host.transcript() == []
