"""The error types the library raises.

Every error says what happened and what to do next; the CLI prints `str(error)` without a
traceback, and the Dagster ops turn it into a failure with the same text.
"""

from __future__ import annotations


class DeplodockError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = 1


class ConfigError(DeplodockError):
    """A setting, flag or file outside recipes is missing or wrong."""

    exit_code = 2


class RecipeError(DeplodockError):
    """A recipe file is wrong: names the file, the field and what was expected."""

    exit_code = 2

    def __init__(self, path: str, field: str, problem: str, hint: str | None = None):
        self.path = str(path)
        self.field = field
        self.problem = problem
        self.hint = hint
        message = f"{self.path}: {field}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class HostError(DeplodockError):
    """A command or file transfer on a host failed.

    `transient` is true when retrying may help (a dropped connection, a timeout reaching the
    host); false when it will not (a refused key, a changed host key, a command that failed).
    """

    def __init__(self, host: str, message: str, *, transient: bool = False):
        self.host = host
        self.transient = transient
        super().__init__(f"{host}: {message}")


class CommandFailed(HostError):
    """A command ran on a host and exited non-zero."""

    def __init__(self, host: str, command: str, exit_code: int, output_tail: str = ""):
        self.command = command
        self.exit_code = exit_code
        self.output_tail = output_tail
        message = f"command exited {exit_code}: {command}"
        if output_tail:
            message += f"\n--- last output ---\n{output_tail}"
        super().__init__(host, message, transient=False)


class DeployError(DeplodockError):
    """An engine could not be deployed, did not become healthy, or failed its smoke test."""


class BenchmarkError(DeplodockError):
    """The benchmark workload failed or produced no usable result."""


class CloudError(DeplodockError):
    """A cloud provider call failed. Subclasses say whether to retry, move on or stop."""

    def __init__(self, provider: str, message: str):
        self.provider = provider
        super().__init__(f"{provider}: {message}")


class CapacityError(CloudError):
    """No machines of this type are free here now: try another type, zone or later."""


class TransientCloudError(CloudError):
    """A call that may succeed if repeated: HTTP 429 or 5xx, a network error, a timeout."""


class TerminalCloudError(CloudError):
    """A call that will not succeed as it is: bad credentials, quota, a bad request."""


class VMLeakError(CloudError):
    """A VM could not be deleted. The message names it and says how to delete it by hand."""
