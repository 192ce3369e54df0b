"""wait_for_ssh against real OpenSSH servers that open late, never, or refuse at first."""

from __future__ import annotations

import threading

import pytest

from deplodock_dagster.errors import HostError
from deplodock_dagster.hosts import HostKeyError
from deplodock_dagster.hosts.wait import wait_for_ssh
from tests.fixtures.sshd import free_port, make_client_key

pytestmark = pytest.mark.sshd


def test_waits_for_a_port_that_opens_late(sshd_factory, tmp_path):
    server = sshd_factory()
    server.stop()
    run_known_hosts = tmp_path / "known_hosts"
    starter = threading.Timer(1.5, server.start)
    starter.start()
    try:
        wait_for_ssh(server.address, 22, "root", server.key_path, deadline_s=60,
                     per_try_timeout_s=5, poll_interval_s=0.3,
                     known_hosts_path=run_known_hosts)
    finally:
        starter.join()
    assert server.process is not None
    # The first contact recorded the VM's key for the rest of the run.
    assert run_known_hosts.read_text().split() == server.known_hosts_entry.split()


def test_waits_while_the_key_is_not_yet_authorized(sshd_factory, tmp_path):
    """A fresh VM: sshd is up before cloud-init has installed the key."""
    other = make_client_key(tmp_path / "other")
    server = sshd_factory(authorized_key=other.with_name(other.name + ".pub").read_text())
    ours = server.key_path.with_name(server.key_path.name + ".pub").read_text()
    installer = threading.Timer(1.0, server.authorized_keys_path.write_text, [ours])
    installer.start()
    try:
        wait_for_ssh(server.address, 22, "root", server.key_path, deadline_s=60,
                     per_try_timeout_s=5, poll_interval_s=0.3)
    finally:
        installer.join()


def test_gives_up_at_the_deadline_with_the_last_error(ssh_client_key):
    port = free_port()
    with pytest.raises(HostError) as caught:
        wait_for_ssh("127.0.0.1", port, "root", ssh_client_key, deadline_s=2,
                     per_try_timeout_s=0.5, poll_interval_s=0.2)
    message = str(caught.value)
    assert caught.value.transient
    assert f"root@127.0.0.1:{port}" in message
    assert "SSH not ready after waiting" in message and "deadline 2s" in message
    assert f"last error: port {port} not reachable" in message


def test_a_refused_key_is_reported_as_the_last_error(sshd, tmp_path):
    stranger = make_client_key(tmp_path)
    with pytest.raises(HostError) as caught:
        wait_for_ssh(sshd.address, sshd.port, "root", stranger, deadline_s=1,
                     per_try_timeout_s=1, poll_interval_s=0.2,
                     known_hosts_path=sshd.known_hosts_path)
    assert "authentication failed" in str(caught.value)
    assert str(stranger) in str(caught.value)


def test_a_changed_host_key_is_refused_at_once(sshd_factory):
    server = sshd_factory()
    server.rotate_host_key()  # its known_hosts file still holds the old key
    with pytest.raises(HostKeyError, match="man-in-the-middle"):
        wait_for_ssh(server.address, 22, "root", server.key_path, deadline_s=600,
                     known_hosts_path=server.known_hosts_path, host_key_policy="strict")


def test_an_unusable_key_file_is_refused_at_once(sshd, tmp_path):
    with pytest.raises(HostError, match="SSH key file .*missing.* not found") as caught:
        wait_for_ssh(sshd.address, sshd.port, "root", tmp_path / "missing", deadline_s=600)
    assert not caught.value.transient
