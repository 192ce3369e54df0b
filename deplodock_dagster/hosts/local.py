"""LocalHost: run commands and write files on this machine with subprocess.

Each command runs in a process group of its own, so a timeout kills the command and
everything it started, not only the first process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from deplodock_dagster.errors import HostError
from deplodock_dagster.hosts.base import CommandResult, Host, join_command
from deplodock_dagster.secrets import redact

logger = logging.getLogger(__name__)

KILL_GRACE_S = 5.0  # after SIGTERM on timeout, how long before SIGKILL
READER_JOIN_S = 5.0  # how long to wait for output a detached grandchild may hold open


class LocalHost(Host):
    """This machine. `run` uses subprocess without a shell; files are written atomically."""

    def __init__(self, name: str = "local"):
        self.name = name

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
        argv = [str(item) for item in argv]
        if not argv:
            raise ValueError("empty command: argv needs at least the program name")
        command = join_command(argv)
        logger.debug("run on %s: %s", self.name, command)
        full_env = {**os.environ, **{str(k): str(v) for k, v in (env or {}).items()}}
        started = time.monotonic()

        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        except FileNotFoundError as error:
            # Same outcome a shell gives for a missing program or directory.
            missing = cwd if cwd and not Path(cwd).is_dir() else argv[0]
            result = CommandResult(command, 127, "", f"{missing}: {error.strerror}",
                                   time.monotonic() - started)
            return self._check(result, check)
        except PermissionError as error:
            result = CommandResult(command, 126, "", f"{argv[0]}: {error.strerror}",
                                   time.monotonic() - started)
            return self._check(result, check)

        stdout_parts: list[str] = []
        stderr_parts: list[str] = []
        emit_lock = threading.Lock()
        readers = [
            threading.Thread(target=_read_lines, daemon=True,
                             args=(stream, parts, on_output, emit_lock))
            for stream, parts in ((process.stdout, stdout_parts),
                                  (process.stderr, stderr_parts))
        ]
        for reader in readers:
            reader.start()

        try:
            exit_code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            for reader in readers:
                reader.join(READER_JOIN_S)
            raise HostError(
                self.name, f"command timed out after {timeout_s}s and was killed: {command}"
            ) from None
        except BaseException:
            _kill_group(process)  # e.g. KeyboardInterrupt: leave nothing running
            raise

        for reader in readers:
            reader.join(READER_JOIN_S)
            if reader.is_alive():
                logger.debug("%s: output still open after exit (a detached child?): %s",
                             self.name, command)
        result = CommandResult(command, exit_code, "".join(stdout_parts),
                               "".join(stderr_parts), time.monotonic() - started)
        return self._check(result, check)

    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        data = content.encode() if isinstance(content, str) else content
        target = Path(path)
        logger.debug("write on %s: %s (%d bytes, mode %04o)", self.name, path, len(data), mode)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Write next to the target and rename, so readers never see half a file.
            handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            try:
                with os.fdopen(handle, "wb") as out:
                    os.fchmod(out.fileno(), mode)
                    out.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise HostError(self.name, f"cannot write {path}: {error}") from error

    def read_file(self, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as error:
            raise HostError(self.name, f"cannot read {path}: {error}") from error

    def file_exists(self, path: str) -> bool:
        return Path(path).exists()


def _read_lines(stream, parts: list[str], on_output, emit_lock: threading.Lock) -> None:
    """Collect a pipe's text and hand each line (without its newline) to `on_output`."""
    with stream:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            parts.append(line)
            if on_output:
                with emit_lock:
                    on_output(redact(line.rstrip("\r\n")))


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM the command's process group, then SIGKILL whatever is left after a grace."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        # Members of the group may outlive the leader: none may stay.
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
