"""DryRunHost: records every command and file write, runs nothing.

Deploy code runs unchanged against it, so `--dry-run` shows exactly what a real deploy
would do, in order. Commands succeed with empty output unless a canned output is given
for them, which lets code that parses output (a health check, a version probe) flow on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from deplodock_dagster.errors import HostError
from deplodock_dagster.hosts.base import CommandResult, Host, shell_command
from deplodock_dagster.secrets import redact

logger = logging.getLogger(__name__)

#: A canned output: stdout text, or (exit_code, stdout).
CannedOutput = str | tuple[int, str]


@dataclass(frozen=True)
class RecordedWrite:
    """A file write the dry run would have made (text redacted; binary shown by size)."""

    path: str
    mode: int
    content: str


class DryRunHost(Host):
    """A host that records what would run on `name` and answers with canned outputs.

    `outputs` maps a command prefix (the start of the shell line, e.g. "docker compose
    version") to its canned output; the longest matching prefix wins. `files` gives
    contents for `read_file` and `file_exists`; files written during the dry run are
    readable back too.
    """

    def __init__(
        self,
        name: str = "dry-run",
        outputs: Mapping[str, CannedOutput] | None = None,
        files: Mapping[str, str | bytes] | None = None,
    ):
        self.name = name
        self.outputs = dict(outputs or {})
        self._files: dict[str, bytes] = {
            path: content.encode() if isinstance(content, str) else content
            for path, content in (files or {}).items()
        }
        self._lines: list[str] = []
        self.commands: list[str] = []  # every shell line that would run, redacted
        self.writes: list[RecordedWrite] = []

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
        command = redact(shell_command(argv, env=env, cwd=cwd))
        self.commands.append(command)
        self._lines.append(f"$ {command}")
        logger.debug("dry run on %s: %s", self.name, command)

        exit_code, stdout = self._canned(command)
        if on_output:
            for line in stdout.splitlines():
                on_output(redact(line))
        return self._check(CommandResult(command, exit_code, stdout, "", 0.0), check)

    def _canned(self, command: str) -> tuple[int, str]:
        matches = [prefix for prefix in self.outputs if command.startswith(prefix)]
        if not matches:
            return 0, ""
        canned = self.outputs[max(matches, key=len)]
        if isinstance(canned, tuple):
            return int(canned[0]), str(canned[1])
        return 0, str(canned)

    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        data = content.encode() if isinstance(content, str) else content
        self._files[path] = data
        try:
            shown = redact(data.decode("utf-8"))
        except UnicodeDecodeError:
            shown = f"<{len(data)} bytes of binary data>"
        self.writes.append(RecordedWrite(path, mode, shown))
        self._lines.append(f"write {path} ({mode:04o})")
        logger.debug("dry run on %s: write %s (%04o)", self.name, path, mode)

    def read_file(self, path: str) -> bytes:
        if path in self._files:
            return self._files[path]
        raise HostError(self.name, f"cannot read {path}: not written in this dry run")

    def file_exists(self, path: str) -> bool:
        return path in self._files

    def transcript(self, with_content: bool = False) -> list[str]:
        """The ordered lines: "$ COMMAND" per command and "write PATH (MODE)" per file.

        With `with_content`, each write is followed by its (redacted) text, indented.
        """
        if not with_content:
            return list(self._lines)
        lines: list[str] = []
        writes = iter(self.writes)
        for line in self._lines:
            lines.append(line)
            if line.startswith("write "):
                record = next(writes)
                lines.extend(f"    {text}" for text in record.content.splitlines())
        return lines

    def print_transcript(self, with_content: bool = False, file=None) -> None:
        """Print the transcript, one line each (to stdout unless `file`)."""
        for line in self.transcript(with_content):
            print(line, file=file)

