"""Hosts: run commands and move files on a machine (local, SSH, dry run).

`connect(conn, key_path=...)` gives the right Host for a VM or fixed host. The SSH module
(and so paramiko) is imported only when an SSH host is made.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from deplodock_dagster.errors import ConfigError
from deplodock_dagster.hosts.base import (
    CommandResult,
    Host,
    HostKeyError,
    join_command,
    shell_command,
)
from deplodock_dagster.hosts.dryrun import DryRunHost
from deplodock_dagster.hosts.local import LocalHost

__all__ = [
    "CommandResult",
    "DryRunHost",
    "Host",
    "HostKeyError",
    "LocalHost",
    "connect",
    "connect_checked",
    "vm_known_hosts_path",
    "join_command",
    "shell_command",
]


def connect(
    conn,
    *,
    key_path: str | os.PathLike | None,
    known_hosts_path: str | os.PathLike | None = None,
    host_key_policy: str = "record",
) -> Host:
    """The Host for `conn` (a vm.types.VMConnectionInfo).

    LocalHost when `conn.transport == "local"`, else an SSHHost at `conn.host:conn.ssh_port`
    as `conn.username` (with `conn.password` when the provider gave one). The SSH connection
    opens on first use. Use "strict" for fixed hosts checked against known_hosts, "record"
    for a fresh VM (with the run's known_hosts file, so every step of the run enforces the
    key seen first).
    """
    if conn.transport == "local":
        return LocalHost(name=conn.name or "local")
    if conn.transport != "ssh":
        raise ConfigError(f"{conn.name}: unknown transport {conn.transport!r} (ssh or local)")
    from deplodock_dagster.hosts.ssh import SSHHost

    return SSHHost(
        conn.host,
        conn.ssh_port,
        conn.username,
        key_path,
        known_hosts_path=known_hosts_path,
        host_key_policy=host_key_policy,
        password=conn.password,
    )


def vm_known_hosts_path(conn) -> str:
    """The known_hosts file of one fresh VM: its key is recorded here at first contact.

    One file per VM (provider and instance id), under $DEPLODOCK_STATE_DIR/known_hosts
    (default ~/.cache/deplodock/known_hosts), so every step of a run, in any process,
    enforces the key seen first, and a later VM that reuses the address starts clean
    instead of being refused as a changed key.
    """
    state = os.environ.get("DEPLODOCK_STATE_DIR") or Path.home() / ".cache" / "deplodock"
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{conn.provider}_{conn.instance_id}")
    return str(Path(state) / "known_hosts" / name)


def connect_checked(conn, *, key_path, known_hosts_path=None) -> Host:
    """connect() with the host key checking `conn` needs.

    A fixed host (provider "fixed") is checked strictly against `known_hosts_path`
    (default ~/.ssh/known_hosts); a fresh VM's key is recorded at first contact in its own
    file (vm_known_hosts_path) and enforced from then on.
    """
    if conn.provider == "fixed":
        known = known_hosts_path or os.path.expanduser("~/.ssh/known_hosts")
        return connect(conn, key_path=key_path, known_hosts_path=known, host_key_policy="strict")
    return connect(conn, key_path=key_path, known_hosts_path=vm_known_hosts_path(conn),
                   host_key_policy="record")
