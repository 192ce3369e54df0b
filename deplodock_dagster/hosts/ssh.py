"""SSHHost: run commands and move files on a machine over SSH (paramiko).

This module imports paramiko at the top: `deplodock_dagster.hosts.connect` imports it only
when an SSH host is actually needed, so importing the package stays light.

Host keys are always checked, in one of two ways:
- "strict" (fixed hosts): the key must already be in known_hosts (the given file, or
  ~/.ssh/known_hosts); an unknown or changed key is refused.
- "record" (a fresh VM): the key seen at first contact is recorded (in the run's
  known_hosts file when given, else in this object) and enforced from then on, so a key
  that changes mid-run is refused.

A connection that drops is re-opened by the next call. A command cut off by the drop is not
re-run (it may not be safe to run twice): it raises HostError(transient=True).
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import paramiko

from deplodock_dagster.errors import ConfigError, HostError
from deplodock_dagster.hosts.base import CommandResult, Host, HostKeyError, shell_command
from deplodock_dagster.secrets import redact, register_secret

logger = logging.getLogger(__name__)

HOST_KEY_POLICIES = ("strict", "record")
DEFAULT_CONNECT_TIMEOUT_S = 30.0
DEFAULT_KEEPALIVE_S = 30
# After a remote `timeout` fires, how long it waits before SIGKILL, and how much longer we
# wait for its exit status before giving up on the channel ourselves.
REMOTE_KILL_AFTER_S = 5
LOCAL_TIMEOUT_GRACE_S = 15.0
POLL_S = 0.5
DROP_SETTLE_S = 2.0
READ_CHUNK = 32768
SFTP_IO_TIMEOUT_S = 120.0  # per read or write on the SFTP channel, not per file


class SSHHost(Host):
    """A machine reached over SSH as `username@address:port`, with key (or password) auth.

    The connection opens on first use and re-opens after a drop. Close it with `close()` or
    use the host as a context manager.
    """

    def __init__(
        self,
        address: str,
        port: int = 22,
        username: str = "root",
        key_path: str | os.PathLike | None = None,
        known_hosts_path: str | os.PathLike | None = None,
        host_key_policy: str = "strict",
        password: str | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        keepalive_s: int = DEFAULT_KEEPALIVE_S,
    ):
        if host_key_policy not in HOST_KEY_POLICIES:
            raise ConfigError(
                f"{username}@{address}:{port}: host key policy {host_key_policy!r} is not one "
                f"of {', '.join(HOST_KEY_POLICIES)}"
            )
        if key_path is None and password is None:
            raise ConfigError(
                f"{username}@{address}:{port}: no SSH key or password given (set the SSH key "
                f"path)"
            )
        self.address = address
        self.port = int(port)
        self.username = username
        self.key_path = str(key_path) if key_path is not None else None
        self.known_hosts_path = str(known_hosts_path) if known_hosts_path else None
        self.host_key_policy = host_key_policy
        self.password = register_secret(password)
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self.name = f"{username}@{address}:{self.port}"

        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        # Keys recorded at first contact when there is no run-scoped file to hold them.
        self._recorded = paramiko.HostKeys()
        self._pkey: paramiko.PKey | None = None

    def __repr__(self) -> str:
        return f"SSHHost({self.name}, policy={self.host_key_policy})"

    # -- connection ---------------------------------------------------------------------

    @property
    def _known_hosts_name(self) -> str:
        """How known_hosts names this host: `addr` on port 22, else `[addr]:port`."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def _connected_client(self) -> paramiko.SSHClient:
        """The live client, connecting (again) if there is none or it dropped."""
        with self._lock:
            client = self._client
            transport = client.get_transport() if client else None
            if transport is not None and transport.is_active():
                return client
            if client is not None:
                logger.info("%s: connection lost; reconnecting", self.name)
                self._drop_client()
            self._client = self._connect()
            return self._client

    def load_key(self) -> paramiko.PKey | None:
        """The client key, loaded once; HostError (not transient) naming the file and what
        to do if it cannot be used. None when logging in by password only."""
        if self.key_path is None:
            return None
        if self._pkey is None:
            problem = None
            try:
                self._pkey = paramiko.PKey.from_path(self.key_path)
            except FileNotFoundError:
                problem = "not found"
            except paramiko.PasswordRequiredException:
                problem = "is protected by a passphrase; use a key without one"
            except TypeError as error:  # cryptography's word for an encrypted OpenSSH key
                problem = ("is protected by a passphrase; use a key without one"
                           if "password" in str(error) else f"cannot be loaded ({error})")
            except (OSError, ValueError, paramiko.SSHException) as error:
                logger.debug("%s: loading %s failed: %s", self.name, self.key_path, error)
                problem = ("is not a private key in OpenSSH or PEM format (give the private "
                           "key file, not the .pub)")
            if problem:
                raise HostError(self.name, f"SSH key file {self.key_path} {problem}")
        return self._pkey

    def _connect(self) -> paramiko.SSHClient:
        pkey = self.load_key()
        client = paramiko.SSHClient()
        self._load_known_keys(client.get_host_keys())
        client.set_missing_host_key_policy(_UnknownHostKeyPolicy(self))
        logger.debug("%s: connecting (host key policy %s)", self.name, self.host_key_policy)
        try:
            client.connect(
                hostname=self.address,
                port=self.port,
                username=self.username,
                pkey=pkey,
                password=self.password,
                timeout=self.connect_timeout_s,
                banner_timeout=self.connect_timeout_s,
                auth_timeout=self.connect_timeout_s,
                allow_agent=False,
                look_for_keys=False,
            )
        except HostError:
            client.close()
            raise
        except paramiko.BadHostKeyException as error:
            client.close()
            raise HostKeyError(self.name, self._changed_key_message(error)) from None
        except paramiko.AuthenticationException as error:
            # paramiko says "authentication failed" too when the link died mid-login: only
            # a server still talking to us has really refused.
            transport = client.get_transport()
            refused = transport is not None and transport.is_active()
            client.close()
            if not refused:
                raise HostError(
                    self.name, f"connection lost while logging in: {_describe(error)}",
                    transient=True,
                ) from error
            raise HostError(self.name, self._auth_failed_message(error)) from None
        except (OSError, EOFError, paramiko.SSHException) as error:
            client.close()
            raise HostError(
                self.name, f"cannot connect: {_describe(error)}", transient=True
            ) from error

        transport = client.get_transport()
        if self.keepalive_s:
            transport.set_keepalive(int(self.keepalive_s))
        logger.debug("%s: connected", self.name)
        return client

    def _load_known_keys(self, host_keys: paramiko.HostKeys) -> None:
        if self.host_key_policy == "strict":
            path = self._strict_known_hosts_file()
            if path.exists():
                _load_host_keys(host_keys, path)
            return
        # record: what this run has seen so far (the shared file may have grown since).
        if self.known_hosts_path and Path(self.known_hosts_path).exists():
            _load_host_keys(host_keys, Path(self.known_hosts_path))
        for name, keys in self._recorded.items():
            for key in keys.values():
                host_keys.add(name, key.get_name(), key)

    def _strict_known_hosts_file(self) -> Path:
        return Path(self.known_hosts_path or Path.home() / ".ssh" / "known_hosts")

    def _record_host_key(self, key: paramiko.PKey) -> None:
        """Remember `key` as this host's key for the rest of the run."""
        self._recorded.add(self._known_hosts_name, key.get_name(), key)
        if not self.known_hosts_path:
            return
        path = Path(self.known_hosts_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = f"{self._known_hosts_name} {key.get_name()} {key.get_base64()}\n"
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # other hosts of the run may write too
            handle.write(line)
        logger.info("%s: recorded host key %s %s in %s", self.name, key.get_name(),
                    _fingerprint(key), path)

    def _changed_key_message(self, error: paramiko.BadHostKeyException) -> str:
        seen = f"{error.key.get_name()} {_fingerprint(error.key)}"
        expected = f"{error.expected_key.get_name()} {_fingerprint(error.expected_key)}"
        if self.host_key_policy == "record":
            source = self.known_hosts_path or "this run's first contact"
            return (
                f"host key changed since it was recorded ({source}): expected {expected}, "
                f"got {seen}. Refusing to connect: possible man-in-the-middle, or the VM was "
                f"replaced. If the VM was replaced on purpose, start a new run."
            )
        path = self._strict_known_hosts_file()
        return (
            f"host key does not match {path}: expected {expected}, got {seen}. Refusing to "
            f"connect: possible man-in-the-middle, or the host was reinstalled. If the change "
            f"is expected, remove the old entry (ssh-keygen -R '{self._known_hosts_name}' -f "
            f"{path}) and add the new key after checking its fingerprint."
        )

    def _unknown_key_message(self, key: paramiko.PKey) -> str:
        path = self._strict_known_hosts_file()
        port = f"-p {self.port} " if self.port != 22 else ""
        return (
            f"host key {key.get_name()} {_fingerprint(key)} is not in {path} (strict host "
            f"key checking). If this host is yours, add its key after checking the "
            f"fingerprint: ssh-keyscan {port}{self.address} >> {path}"
        )

    def _auth_failed_message(self, error: Exception) -> str:
        how = f"key {self.key_path}" if self.key_path else "password"
        if self.key_path and self.password:
            how = f"key {self.key_path} or password"
        return (
            f"authentication failed for {self.username}@{self.address}:{self.port} with "
            f"{how} ({_describe(error)}). Check that the public key is in the user's "
            f"authorized_keys on the host (and that the user name is right)."
        )

    def _drop_client(self) -> None:
        with self._lock:
            sftp, client = self._sftp, self._client
            self._sftp = self._client = None
        for closeable in (sftp, client):
            if closeable is not None:
                try:
                    closeable.close()
                except Exception:  # noqa: BLE001 - closing a dead connection may fail anyhow
                    pass

    def close(self) -> None:
        self._drop_client()

    # -- commands -----------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        on_output: Callable[[str], None] | None = None,
        check: bool = True,
    ) -> CommandResult:
        remote = shell_command(argv, env=env, cwd=cwd)
        shown = redact(remote)
        if timeout_s is not None:
            # The remote `timeout` kills the command there too, even if we lose the link.
            remote = (
                f"timeout --kill-after={REMOTE_KILL_AFTER_S}s {_seconds(timeout_s)}s "
                f"sh -c {shlex.quote(remote)}"
            )
        logger.debug("run on %s: %s", self.name, shown)

        started = time.monotonic()
        channel = self._open_channel(shown)
        try:
            channel.exec_command(remote)
        except (ConnectionError, EOFError, paramiko.SSHException) as error:
            # The request may have reached the host: do not send it again.
            channel.close()
            self._drop_client()
            raise HostError(
                self.name,
                f"connection lost while starting the command ({_describe(error)}): {shown}. "
                f"It may or may not have started; it was not re-sent.",
                transient=True,
            ) from error

        try:
            exit_code, stdout, stderr = self._collect(channel, timeout_s, on_output, shown)
        finally:
            channel.close()
        duration_s = time.monotonic() - started

        if timeout_s is not None and exit_code in (124, 137) and duration_s >= timeout_s:
            raise HostError(self.name, f"command timed out after {timeout_s}s and was "
                                       f"killed: {shown}")
        result = CommandResult(shown, exit_code, stdout, stderr, duration_s)
        return self._check(result, check)

    def _open_channel(self, shown: str):
        """A session channel on a live connection. A connection found dead here is opened
        again once: no command was sent on it, so nothing can run twice."""
        for attempt in (1, 2):
            client = self._connected_client()
            try:
                return client.get_transport().open_session(timeout=self.connect_timeout_s)
            except (OSError, EOFError, paramiko.SSHException) as error:
                self._drop_client()
                if attempt == 2:
                    raise HostError(
                        self.name,
                        f"connection lost before the command started ({_describe(error)}): "
                        f"{shown}. It did not run; retrying is safe.",
                        transient=True,
                    ) from error
                logger.info("%s: connection was dropped; reconnecting", self.name)
        raise AssertionError("unreachable")

    def _collect(self, channel, timeout_s, on_output, shown) -> tuple[int, str, str]:
        """Read both streams until the command exits; stream lines to `on_output`."""
        out = _LineBuffer(on_output)
        err = _LineBuffer(on_output)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if deadline is not None:
            deadline += REMOTE_KILL_AFTER_S + LOCAL_TIMEOUT_GRACE_S
        transport = channel.get_transport()

        while True:
            select.select([channel], [], [], POLL_S)
            while channel.recv_ready():
                out.feed(channel.recv(READ_CHUNK))
            while channel.recv_stderr_ready():
                err.feed(channel.recv_stderr(READ_CHUNK))
            if channel.exit_status_ready() or channel.closed or not transport.is_active():
                if not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
            if deadline is not None and time.monotonic() > deadline:
                self._drop_client()
                raise HostError(
                    self.name,
                    f"command timed out after {timeout_s}s (no exit status from the host): "
                    f"{shown}",
                    transient=True,
                )

        out.finish()
        err.finish()
        exit_code = channel.recv_exit_status()
        if exit_code == -1 and self._connection_lost(transport):
            self._drop_client()
            raise HostError(
                self.name,
                f"connection lost while the command was running: {shown}. It may have run "
                f"partly; it was not re-run. The next call reconnects.",
                transient=True,
            )
        stderr = err.text()
        if exit_code == -1:
            stderr += "\n(the command ended without an exit status: killed by a signal?)"
        return exit_code, out.text(), stderr

    @staticmethod
    def _connection_lost(transport) -> bool:
        """True if the transport died (it closes its channels a moment before it says so)."""
        give_up = time.monotonic() + DROP_SETTLE_S
        while transport.is_active() and time.monotonic() < give_up:
            time.sleep(0.05)
        return not transport.is_active()

    # -- files --------------------------------------------------------------------------

    def _sftp_call(self, what: str, action: Callable[[paramiko.SFTPClient], object]):
        """Run `action` with the SFTP session, on a live connection.

        Every file action here is safe to repeat (reads, and writes that end in a rename),
        so after a dropped connection it runs once more on a new one. A file error (no such
        file, permission) is a HostError that is not transient.
        """
        for attempt in (1, 2):
            try:
                with self._lock:
                    client = self._connected_client()
                    if self._sftp is None:
                        self._sftp = client.open_sftp()
                        # A host that stops answering mid-transfer must not hang the run.
                        self._sftp.get_channel().settimeout(SFTP_IO_TIMEOUT_S)
                    sftp = self._sftp
                return action(sftp)
            except (ConnectionError, TimeoutError, EOFError, paramiko.SSHException) as error:
                self._drop_client()
                if attempt == 2:
                    raise HostError(
                        self.name, f"connection lost trying to {what}: {_describe(error)}",
                        transient=True,
                    ) from error
                logger.info("%s: connection was dropped; reconnecting", self.name)
            except OSError as error:
                raise HostError(self.name, f"cannot {what}: {_describe(error)}") from error
        raise AssertionError("unreachable")

    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        data = content.encode() if isinstance(content, str) else content
        logger.debug("write on %s: %s (%d bytes, mode %04o)", self.name, path, len(data), mode)
        target = PurePosixPath(path)
        parent = str(target.parent)
        if parent not in ("", ".", "/"):
            self.run(["mkdir", "-p", parent], timeout_s=self.connect_timeout_s)

        def write(sftp: paramiko.SFTPClient) -> None:
            # Write a temp file next to the target, then rename: readers never see half a
            # file. Its mode is set before any content goes in, so a secret is never
            # readable by others.
            tmp = str(target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"))
            try:
                with sftp.open(tmp, "wb") as handle:
                    handle.chmod(mode)
                    handle.set_pipelined(True)
                    handle.write(data)
                sftp.posix_rename(tmp, str(target))
            except OSError:
                _remove_quietly(sftp, tmp)
                raise

        self._sftp_call(f"write {path}", write)

    def read_file(self, path: str) -> bytes:
        def read(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(path, "rb") as handle:
                handle.prefetch()
                return handle.read()

        return self._sftp_call(f"read {path}", read)

    def file_exists(self, path: str) -> bool:
        def exists(sftp: paramiko.SFTPClient) -> bool:
            try:
                sftp.stat(path)
                return True
            except FileNotFoundError:
                return False

        return self._sftp_call(f"check {path}", exists)


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except (OSError, EOFError, paramiko.SSHException):
        pass


class _UnknownHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown key ("strict"), or record it at first contact ("record").

    paramiko calls this only for a host with no known key at all; a known host offering
    another key, even of another type, raises BadHostKeyException before.
    """

    def __init__(self, host: SSHHost):
        self.host = host

    def missing_host_key(self, client, hostname, key):
        if self.host.host_key_policy == "record":
            self.host._record_host_key(key)
            return
        raise HostKeyError(self.host.name, self.host._unknown_key_message(key))


class _LineBuffer:
    """Collects a stream's bytes; hands each complete line to a callback as it arrives."""

    def __init__(self, on_output: Callable[[str], None] | None):
        self.on_output = on_output
        self.chunks: list[bytes] = []
        self.pending = b""

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.chunks.append(data)
        if self.on_output is None:
            return
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self.on_output(redact(line.decode("utf-8", errors="replace").rstrip("\r")))

    def finish(self) -> None:
        if self.on_output is not None and self.pending:
            self.on_output(redact(self.pending.decode("utf-8", errors="replace").rstrip("\r")))
        self.pending = b""

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", errors="replace")


def _load_host_keys(host_keys: paramiko.HostKeys, path: Path) -> None:
    try:
        host_keys.load(str(path))
    except (OSError, paramiko.SSHException) as error:
        raise HostError(str(path), f"cannot read known_hosts file: {error}") from error


def _fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint if hasattr(key, "fingerprint") else key.get_base64()[:16]


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return redact(text)


def _seconds(value: float) -> str:
    return f"{max(value, 0.001):.3f}".rstrip("0").rstrip(".")
