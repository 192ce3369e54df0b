"""SSHHost against a real OpenSSH server on loopback (tests/fixtures/sshd.py)."""

from __future__ import annotations

import logging
import os
import random
import sys

import pytest

from deplodock_dagster.errors import CommandFailed, ConfigError, HostError
from deplodock_dagster.hosts import HostKeyError, LocalHost, connect
from deplodock_dagster.hosts.ssh import SSHHost
from deplodock_dagster.secrets import redact
from deplodock_dagster.vm.types import VMConnectionInfo
from tests.fixtures.sshd import ConnectionDropper, make_client_key

pytestmark = pytest.mark.sshd


@pytest.fixture
def host(sshd):
    """An SSHHost on the shared server, checking its key strictly."""
    with SSHHost(sshd.address, sshd.port, sshd.username, sshd.key_path,
                 known_hosts_path=sshd.known_hosts_path, host_key_policy="strict") as ssh:
        yield ssh


def injection_payloads(canary) -> list[str]:
    return [
        f"$(touch {canary})",
        f"`touch {canary}`",
        f"; touch {canary}",
        f"&& touch {canary}",
        f"| touch {canary}",
        f"' ; touch {canary} ; '",
        f'" ; touch {canary} ; "',
        f"a\ntouch {canary}\nb",
        f"$(printf x > {canary})",
        "${HOME} $PATH * ~ {a,b} !! \\ \t end",
        "",
    ]


# -- commands ---------------------------------------------------------------------------


def test_run_captures_stdout_stderr_and_exit_code(host):
    result = host.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok
    assert result.command == "sh -c 'echo out; echo err >&2; exit 3'"

    with pytest.raises(CommandFailed) as caught:
        host.run(["sh", "-c", "echo boom >&2; exit 5"])
    assert caught.value.exit_code == 5
    assert "boom" in str(caught.value) and host.name in str(caught.value)
    assert not caught.value.transient


def test_run_env_and_cwd(host, tmp_path):
    work = tmp_path / "dir with space"
    work.mkdir()
    result = host.run(["sh", "-c", 'pwd; printf "%s|%s" "$A" "$B"'], cwd=str(work),
                      env={"A": "one two", "B": "x'y\"z"})
    assert result.stdout == f"{work}\none two|x'y\"z"

    with pytest.raises(ConfigError, match="not a shell identifier"):
        host.run(["true"], env={"A; touch x": "1"})


def test_on_output_streams_each_line_in_order(host):
    lines: list[str] = []
    result = host.run(["sh", "-c", "printf 'a\\nb\\n'; echo c >&2; printf 'tail'"],
                      on_output=lines.append)
    assert sorted(lines) == ["a", "b", "c", "tail"]
    assert lines.index("a") < lines.index("b")
    assert result.stdout == "a\nb\ntail"


def test_timeout_names_host_command_and_kills_the_remote_command(host):
    marker = "31.2345"
    with pytest.raises(HostError) as caught:
        host.run(["sleep", marker], timeout_s=1)
    message = str(caught.value)
    assert host.name in message and f"sleep {marker}" in message and "1s" in message
    # The remote `timeout` waited for the command to die before it answered.
    left = LocalHost().run(["pgrep", "-f", f"sleep {marker}"], check=False)
    assert left.exit_code == 1, left.stdout
    # The connection is still usable.
    assert host.run(["echo", "ok"]).stdout == "ok\n"


def test_injection_payloads_arrive_verbatim_and_never_run(host, tmp_path):
    canary = tmp_path / "canary"
    payloads = injection_payloads(canary)

    result = host.run(["printf", "%s\\0", *payloads])
    assert result.stdout.split("\0")[:-1] == payloads

    env = {f"V{i}": payload for i, payload in enumerate(payloads)}
    script = "printf '%s\\0' " + " ".join(f'"${name}"' for name in env)
    got = host.run(["sh", "-c", script], env=env)
    assert got.stdout.split("\0")[:-1] == payloads

    odd_dir = tmp_path / f"d $(touch {canary}) `touch {canary}` ; x"
    host.run(["mkdir", "-p", str(odd_dir)])
    assert host.run(["pwd"], cwd=str(odd_dir)).stdout == f"{odd_dir}\n"

    host.write_file(str(odd_dir / "f; touch x"), payloads[0])
    assert host.read_file(str(odd_dir / "f; touch x")).decode() == payloads[0]
    assert not canary.exists()


# -- files ------------------------------------------------------------------------------


def test_write_and_read_files_with_mode(host, tmp_path):
    target = tmp_path / "deep" / "er" / "secret.env"
    host.write_file(str(target), "HF_TOKEN=abc\n", mode=0o600)
    assert host.read_file(str(target)) == b"HF_TOKEN=abc\n"
    assert host.run(["stat", "-c", "%a", str(target)]).stdout.strip() == "600"

    blob = os.urandom(3 * 1024 * 1024)  # bigger than any SFTP window or packet
    host.write_file(str(target), blob, mode=0o640)  # replaces the file
    assert host.read_file(str(target)) == blob
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret.env"]  # no temp left

    assert host.file_exists(str(target))
    assert not host.file_exists(str(tmp_path / "missing"))
    with pytest.raises(HostError, match="cannot read .*missing") as caught:
        host.read_file(str(tmp_path / "missing"))
    assert not caught.value.transient


def test_file_contents_and_password_stay_out_of_logs(sshd, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    password = "pw-for-the-log-test-9f3a"
    with SSHHost(sshd.address, sshd.port, sshd.username, sshd.key_path,
                 known_hosts_path=sshd.known_hosts_path, password=password) as ssh:
        assert redact(password) == "***"
        assert password not in repr(ssh)
        ssh.write_file(str(tmp_path / "t.env"), "TOKEN=content-never-logged\n", 0o600)
        ssh.run(["echo", password])
    assert "content-never-logged" not in caplog.text
    assert password not in caplog.text
    assert "echo ***" in caplog.text


# -- connections ------------------------------------------------------------------------


def test_dropped_connection_mid_command_is_transient_and_next_call_reconnects(sshd_factory):
    server = sshd_factory()
    ssh = SSHHost(server.address, server.port, server.username, server.key_path,
                  known_hosts_path=server.known_hosts_path)
    assert ssh.name == f"root@{server.address}:22"
    ssh.run(["true"])

    def drop_when_started(line: str) -> None:
        if line == "started":
            assert server.drop_connections() > 0

    with pytest.raises(HostError) as caught:
        ssh.run(["sh", "-c", "echo started; sleep 30; echo finished"],
                on_output=drop_when_started)
    assert caught.value.transient
    assert "connection lost while the command was running" in str(caught.value)
    assert "not re-run" in str(caught.value)

    assert ssh.run(["echo", "back"]).stdout == "back\n"
    ssh.close()
    ssh.close()  # twice is fine


def test_refused_key_is_a_clear_permanent_error(sshd, tmp_path):
    stranger = make_client_key(tmp_path)
    ssh = SSHHost(sshd.address, sshd.port, "root", stranger,
                  known_hosts_path=sshd.known_hosts_path)
    with pytest.raises(HostError) as caught:
        ssh.run(["true"])
    message = str(caught.value)
    assert not caught.value.transient
    assert f"root@{sshd.address}:{sshd.port}" in message
    assert str(stranger) in message and "authorized_keys" in message


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda d: d / "missing", "not found"),
        (lambda d: _write(d / "garbage", "not a key\n"), "not a private key"),
        (lambda d: make_client_key(d).with_name("client_ed25519.pub"), "not the .pub"),
        (lambda d: _encrypted_key(d), "protected by a passphrase"),
    ],
    ids=["missing", "garbage", "public-key", "encrypted"],
)
def test_unusable_key_file_is_named_with_what_to_do(sshd, tmp_path, make, problem):
    key = make(tmp_path)
    ssh = SSHHost(sshd.address, sshd.port, "root", key,
                  known_hosts_path=sshd.known_hosts_path)
    with pytest.raises(HostError) as caught:
        ssh.run(["true"])
    assert f"SSH key file {key} " in str(caught.value) and problem in str(caught.value)
    assert not caught.value.transient


def _write(path, text):
    path.write_text(text)
    return path


def _encrypted_key(directory):
    key = directory / "encrypted"
    LocalHost().run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a-passphrase", "-f", str(key)])
    return key


def test_rsa_key_login(sshd_factory, tmp_path):
    rsa = make_client_key(tmp_path, "rsa")
    server = sshd_factory(authorized_key=rsa.with_name(rsa.name + ".pub").read_text())
    with SSHHost(server.address, 22, "root", rsa,
                 known_hosts_path=server.known_hosts_path) as ssh:
        assert ssh.run(["echo", "rsa"]).stdout == "rsa\n"


def test_nothing_listening_is_transient(tmp_path, ssh_client_key):
    from tests.fixtures.sshd import free_port

    ssh = SSHHost("127.0.0.1", free_port(), "root", ssh_client_key,
                  known_hosts_path=tmp_path / "kh", connect_timeout_s=3)
    with pytest.raises(HostError, match="cannot connect") as caught:
        ssh.run(["true"])
    assert caught.value.transient


# -- host keys --------------------------------------------------------------------------


def test_strict_policy_refuses_an_unknown_host(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    ssh = SSHHost(sshd.address, sshd.port, "root", sshd.key_path, known_hosts_path=empty,
                  host_key_policy="strict")
    with pytest.raises(HostKeyError) as caught:
        ssh.run(["true"])
    message = str(caught.value)
    assert not caught.value.transient
    assert f"root@{sshd.address}:{sshd.port}" in message
    assert f"ssh-keyscan -p {sshd.port} {sshd.address} >> {empty}" in message
    assert empty.read_text() == ""  # nothing recorded


def test_strict_policy_refuses_a_changed_key(sshd_factory):
    server = sshd_factory()
    server.rotate_host_key()  # known_hosts keeps the old key
    ssh = SSHHost(server.address, 22, "root", server.key_path,
                  known_hosts_path=server.known_hosts_path, host_key_policy="strict")
    with pytest.raises(HostKeyError) as caught:
        ssh.run(["true"])
    message = str(caught.value)
    assert "does not match" in message and "man-in-the-middle" in message
    assert f"ssh-keygen -R '{server.address}'" in message


def test_record_policy_records_first_key_and_refuses_a_changed_one(sshd_factory, tmp_path):
    server = sshd_factory()
    run_known_hosts = tmp_path / "run" / "known_hosts"
    ssh = SSHHost(server.address, 22, "root", server.key_path,
                  known_hosts_path=run_known_hosts, host_key_policy="record")
    ssh.run(["true"])
    assert run_known_hosts.read_text().split() == server.known_hosts_entry.split()

    # Another step of the same run trusts the recorded key without recording it again.
    with SSHHost(server.address, 22, "root", server.key_path,
                 known_hosts_path=run_known_hosts, host_key_policy="record") as other:
        other.run(["true"])
    assert len(run_known_hosts.read_text().splitlines()) == 1

    server.rotate_host_key()  # the VM was replaced, or someone is in the middle
    error = _first_non_transient_error(ssh)
    assert isinstance(error, HostKeyError)
    assert "host key changed since it was recorded" in str(error)
    assert "man-in-the-middle" in str(error) and "VM was replaced" in str(error)

    fresh = SSHHost(server.address, 22, "root", server.key_path,
                    known_hosts_path=run_known_hosts, host_key_policy="record")
    with pytest.raises(HostKeyError, match="changed since it was recorded"):
        fresh.run(["true"])


@pytest.mark.parametrize("policy", ["record", "strict"])
def test_a_host_key_of_another_type_is_a_changed_key(sshd_factory, tmp_path, policy):
    """A replaced VM that offers only an RSA key where an ed25519 key was known."""
    server = sshd_factory()
    known_hosts = server.write_known_hosts(tmp_path / "known_hosts")
    server.rotate_host_key(key_type="rsa")
    ssh = SSHHost(server.address, 22, "root", server.key_path, known_hosts_path=known_hosts,
                  host_key_policy=policy)
    with pytest.raises(HostKeyError, match="man-in-the-middle"):
        ssh.run(["true"])
    assert len(known_hosts.read_text().splitlines()) == 1  # nothing recorded


def test_record_policy_without_a_file_enforces_within_the_host(sshd_factory):
    server = sshd_factory()
    ssh = SSHHost(server.address, 22, "root", server.key_path, host_key_policy="record")
    ssh.run(["true"])
    server.rotate_host_key()
    assert isinstance(_first_non_transient_error(ssh), HostKeyError)


def _first_non_transient_error(ssh: SSHHost) -> HostError:
    """Run until the host refuses: the first call after a server restart may only notice
    that the old connection is gone (transient); the reconnect is what gets checked."""
    for _ in range(3):
        try:
            ssh.run(["true"])
        except HostError as error:
            if not error.transient:
                return error
    pytest.fail(f"{ssh.name}: expected a refusal, every call succeeded or was transient")


def test_bad_policy_name_is_rejected():
    with pytest.raises(ConfigError, match="host key policy 'trust-me'"):
        SSHHost("127.0.0.1", 22, "root", "/k", host_key_policy="trust-me")
    with pytest.raises(ConfigError, match="no SSH key or password"):
        SSHHost("127.0.0.1", 22, "root", None)


# -- connect() --------------------------------------------------------------------------


def _conn(**changes) -> VMConnectionInfo:
    base = dict(provider="fixed", instance_id="i-1", name="box", host="127.0.0.1",
                ssh_port=22, username="root", delete_info={})
    return VMConnectionInfo(**{**base, **changes})


def test_connect_gives_ssh_host_for_a_vm(sshd, tmp_path):
    conn = _conn(host=sshd.address, ssh_port=sshd.port, username=sshd.username)
    with connect(conn, key_path=sshd.key_path, known_hosts_path=tmp_path / "kh") as host:
        assert isinstance(host, SSHHost)
        assert host.host_key_policy == "record"
        assert host.run(["echo", "vm"]).stdout == "vm\n"
    assert (tmp_path / "kh").read_text().startswith(f"[{sshd.address}]:{sshd.port} ")


def test_connect_gives_local_host_for_local_transport():
    host = connect(_conn(transport="local"), key_path=None)
    assert isinstance(host, LocalHost)
    assert host.run([sys.executable, "-c", "print(6 * 7)"]).stdout == "42\n"


def test_connect_registers_the_vm_password(tmp_path):
    host = connect(_conn(password="vm-password-1234"), key_path=tmp_path / "k")
    assert isinstance(host, SSHHost)
    assert redact("pw vm-password-1234") == "pw ***"


def test_after_an_idle_drop_the_next_calls_just_work(sshd_factory, tmp_path):
    """Nothing was running when the link dropped, so nothing can run twice: reconnect."""
    server = sshd_factory()
    ssh = SSHHost(server.address, 22, "root", server.key_path,
                  known_hosts_path=server.known_hosts_path)
    target = str(tmp_path / "f.txt")
    ssh.write_file(target, "one")

    server.drop_connections()
    assert ssh.run(["echo", "again"]).stdout == "again\n"
    server.drop_connections()
    assert ssh.read_file(target) == b"one"
    server.drop_connections()
    ssh.write_file(target, "two")
    server.drop_connections()
    assert ssh.file_exists(target)
    assert (tmp_path / "f.txt").read_text() == "two"
    ssh.close()


def test_work_completes_over_a_flaky_network_by_retrying_transient_errors(sshd_factory):
    """What the bench does under random drops: retry what is transient, lose nothing.

    A seeded generator decides where the link drops: between commands, or in the middle of
    a command (which then waits for the cut), so the test does not depend on timing.
    """
    server = sshd_factory()
    ssh = SSHHost(server.address, 22, "root", server.key_path,
                  known_hosts_path=server.known_hosts_path)
    chance = random.Random(11)
    seen = {"idle drops": 0, "mid-command drops": 0, "transient errors": 0}

    def drop_now(line: str) -> None:
        if line == "started":
            seen["mid-command drops"] += 1
            server.drop_connections()

    outputs: list[str] = []
    for i in range(6):
        for _ in range(30):
            if chance.random() < 0.3:
                seen["idle drops"] += 1
                server.drop_connections()
            cut = chance.random() < 0.4
            script = f"echo started; sleep 30; echo {i}" if cut else f"echo {i}"
            try:
                outputs.append(ssh.run(["sh", "-c", script],
                                       on_output=drop_now if cut else None).stdout)
                break
            except HostError as error:
                assert error.transient, error
                seen["transient errors"] += 1
    assert outputs == [f"{i}\n" for i in range(6)]
    assert seen["transient errors"] == seen["mid-command drops"] >= 1, seen
    assert seen["idle drops"] >= 1, seen  # these cost no error: the next call reconnects
    ssh.close()


def test_connection_dropper_cuts_live_connections(sshd_factory):
    server = sshd_factory()
    ssh = SSHHost(server.address, 22, "root", server.key_path,
                  known_hosts_path=server.known_hosts_path)
    with ConnectionDropper([server], mean_interval_s=0.2, seed=1) as dropper:
        with pytest.raises(HostError) as caught:
            ssh.run(["sleep", "60"])  # ends when the first drop cuts it
    assert caught.value.transient and dropper.drops >= 1
    assert ssh.run(["echo", "ok"]).stdout == "ok\n"


def test_streamed_lines_are_redacted_over_ssh(host):
    from deplodock_dagster.secrets import register_secret

    token = register_secret("hf_streamed_ssh_secret_77")
    lines: list[str] = []
    host.run(["printf", "a %s\\nb %s", token, token], on_output=lines.append)
    assert lines == ["a ***", "b ***"]
