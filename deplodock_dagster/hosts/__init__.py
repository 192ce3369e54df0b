"""Hosts: run commands and move files on a machine (local, SSH, dry run).

`connect(conn, key_path=...)` gives the right Host for a VM or fixed host. The SSH module
(and so paramiko) is imported only when an SSH host is made.
"""

from __future__ import annotations

import os

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
