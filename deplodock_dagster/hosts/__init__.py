"""Hosts: run commands and move files on a machine (local, SSH, dry run)."""

from deplodock_dagster.hosts.base import CommandResult, Host, join_command

__all__ = ["CommandResult", "Host", "join_command"]
