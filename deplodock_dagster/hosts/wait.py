"""Wait until a machine accepts SSH logins: a cheap port probe, then a real login.

A fresh VM opens its SSH port before it lets anyone in (cloud-init may still be writing
authorized_keys), so only a login that runs `true` counts as ready. A changed host key is
never waited out: it is refused at once.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from deplodock_dagster.errors import HostError
from deplodock_dagster.hosts.base import HostKeyError

logger = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 600.0
DEFAULT_PER_TRY_TIMEOUT_S = 10.0
DEFAULT_POLL_INTERVAL_S = 5.0


def wait_for_ssh(
    address: str,
    port: int,
    username: str,
    key_path: str | os.PathLike | None,
    *,
    deadline_s: float = DEFAULT_DEADLINE_S,
    per_try_timeout_s: float = DEFAULT_PER_TRY_TIMEOUT_S,
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    password: str | None = None,
    known_hosts_path: str | os.PathLike | None = None,
    host_key_policy: str = "record",
) -> None:
    """Return once `username@address:port` accepts a login and runs `true`.

    Each try probes the TCP port, then logs in, each bounded by `per_try_timeout_s`; tries
    repeat every `poll_interval_s` until `deadline_s` has passed, then HostError says how
    long it waited and the last error. A host key mismatch or an unusable key file raises
    at once (not transient).
    """
    from deplodock_dagster.hosts.ssh import SSHHost  # paramiko only when needed

    host = SSHHost(address, port, username, key_path, known_hosts_path=known_hosts_path,
                   host_key_policy=host_key_policy, password=password, keepalive_s=0)
    host.load_key()  # a bad key file will not fix itself by waiting
    name = host.name
    started = time.monotonic()
    give_up = started + deadline_s
    tries = 0
    last_error = "no try finished"
    logger.info("waiting for SSH on %s (up to %.0fs)", name, deadline_s)

    while True:
        tries += 1
        remaining = give_up - time.monotonic()
        host.connect_timeout_s = max(0.1, min(per_try_timeout_s, remaining))
        error = _probe_port(address, port, host.connect_timeout_s)
        if error is None:
            error = _try_login(host, host.connect_timeout_s)
            if error is None:
                logger.info("SSH ready on %s after %.1fs (%d tries)", name,
                            time.monotonic() - started, tries)
                return
        last_error = error
        logger.debug("SSH not ready on %s (try %d): %s", name, tries, error)

        if time.monotonic() + poll_interval_s >= give_up:
            waited = time.monotonic() - started
            raise HostError(
                name,
                f"SSH not ready after waiting {waited:.0f}s (deadline {deadline_s:.0f}s, "
                f"{tries} tries); last error: {last_error}",
                transient=True,
            )
        time.sleep(poll_interval_s)


def _probe_port(address: str, port: int, timeout_s: float) -> str | None:
    """None if a TCP connection opens, else why not."""
    try:
        with socket.create_connection((address, port), timeout=timeout_s):
            return None
    except OSError as error:
        return f"port {port} not reachable: {error.strerror or error}"


def _try_login(host, timeout_s: float) -> str | None:
    """None if a login runs `true`, else why not; a host key problem raises."""
    try:
        host.run(["true"], timeout_s=timeout_s)
        return None
    except HostKeyError:
        raise  # a changed or unknown key will not fix itself by waiting
    except HostError as error:
        return str(error).removeprefix(f"{host.name}: ")
    finally:
        host.close()
