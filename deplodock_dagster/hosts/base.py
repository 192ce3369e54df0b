"""One small interface to run commands and move files on a machine.

Commands are argv lists, never shell strings built from data: a remote host receives
`shlex.join(argv)`, so every item arrives as one word whatever it contains. Where a real
shell is needed (a pipeline, a redirect), pass `["bash", "-c", SCRIPT, ...]` with a script
written by this package and data passed as positional arguments ($1, $2, ...).
"""

from __future__ import annotations

import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from deplodock_dagster.errors import CommandFailed, ConfigError, HostError
from deplodock_dagster.secrets import redact

OUTPUT_TAIL_LINES = 40


class HostKeyError(HostError):
    """A host's SSH key is unknown (strict checking) or not the key known for it.

    Never transient: waiting or retrying will not fix it; a person must look.
    """


@dataclass
class CommandResult:
    """What a finished command left: exit code, captured output and how long it took."""

    command: str  # shlex-joined argv, secrets redacted
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def output_tail(self, lines: int = OUTPUT_TAIL_LINES) -> str:
        """The last lines of stdout and stderr together, secrets redacted."""
        text = "\n".join(part for part in (self.stdout, self.stderr) if part)
        return redact("\n".join(text.splitlines()[-lines:]))


class Host(ABC):
    """A machine that can run commands and hold files: local, over SSH, or a dry run."""

    #: Shown in every message about this host, e.g. "root@127.0.0.2:22" or "local".
    name: str = "host"

    @abstractmethod
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
        """Run `argv` and wait for it.

        `on_output` receives each output line as it arrives, registered secrets redacted
        (such lines go to logs); the whole output is also captured in the result, as is.
        `env` values must not be secrets: pass secrets in a file written with mode 0o600.
        With `check`, a non-zero exit raises CommandFailed. A timeout or lost connection
        raises HostError.
        """

    @abstractmethod
    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        """Create or replace `path` (parents created) with `content` and `mode`."""

    @abstractmethod
    def read_file(self, path: str) -> bytes:
        """Return the bytes of `path`; HostError if it cannot be read."""

    def file_exists(self, path: str) -> bool:
        """True if `path` exists on the host."""
        return self.run(["test", "-e", path], check=False).ok

    def close(self) -> None:
        """Release connections. Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Helpers shared by implementations.

    def _check(self, result: CommandResult, check: bool) -> CommandResult:
        if check and not result.ok:
            raise CommandFailed(self.name, result.command, result.exit_code, result.output_tail())
        return result


def join_command(argv: Sequence[str]) -> str:
    """The shell-safe text of `argv`, with registered secrets redacted (for logs)."""
    return redact(shlex.join([str(item) for item in argv]))


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def shell_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> str:
    """The one shell line that runs `argv` in `cwd` with `env` added, every item quoted.

    `cd DIR && env K=V ... ARGV`: what a remote shell receives. Raises ValueError for an
    empty argv or a program name holding "=", ConfigError for an environment name that is
    not a shell identifier.
    """
    if not argv:
        raise ValueError("empty command: argv needs at least the program name")
    if "=" in str(argv[0]):
        # A shell (and `env`) would take it as an assignment and run the next item instead.
        raise ValueError(f"program name {str(argv[0])!r} contains '='")
    parts = []
    if cwd:
        parts.append(f"cd {shlex.quote(str(cwd))} &&")
    if env:
        for key in env:
            if not _ENV_NAME.fullmatch(str(key)):
                raise ConfigError(
                    f"environment variable name {key!r} is not a shell identifier "
                    f"(letters, digits and _, not starting with a digit)"
                )
        assignments = [shlex.quote(f"{key}={value}") for key, value in env.items()]
        parts.append("env " + " ".join(assignments))
    parts.append(shlex.join([str(item) for item in argv]))
    return " ".join(parts)
