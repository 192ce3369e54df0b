"""What every engine runtime shares: the Runtime interface, the deploy outcome, and the
host-side steps both runtimes take (paths, the 0600 env file, health polling, smoke test).

Every command here is an argv list. Where a shell is needed, the script is a constant of
this module and data reaches it only as positional arguments ($1, $2, ...).
"""

from __future__ import annotations

import json
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from deplodock_dagster.deploy.params import DeployParams
from deplodock_dagster.errors import ConfigError, DeployError, HostError
from deplodock_dagster.secrets import redact, register_secret

logger = logging.getLogger(__name__)

ENV_FILE_NAME = ".env"
HEALTH_POLL_INTERVAL_S = 2.0
HEALTH_PROBE_TIMEOUT_S = 5
HEALTH_PROBE_HOST_TIMEOUT_S = 90  # the probe's whole round trip (a slow SSH session start)
MAX_PROBE_HOST_ERRORS = 5
SMOKE_TIMEOUT_S = 120
SMOKE_PROMPT = "Say hello in one word."
SMOKE_MAX_TOKENS = 8
LOG_TAIL_LINES = 80

# Tokens are written unquoted into a file that compose and a shell both read, so only the
# characters real Hugging Face tokens use are accepted.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass
class DeployOutcome:
    """What a deploy left running: where it serves and how to find the engine again.

    `deploy_spec` is the compose file or the engine command line, with secrets redacted.
    `handle` holds runtime details: pid, log path and deploy dir (process), compose file and
    project (docker-compose).
    """

    endpoint: str  # OpenAI-compatible base URL, e.g. http://10.0.0.5:8000/v1
    runtime: str
    deploy_spec: str
    served_model_name: str
    handle: dict = field(default_factory=dict)
    dry_run: bool = False


class Runtime(ABC):
    """One way of running an engine on a host (docker compose, plain process)."""

    name: str = "runtime"

    @abstractmethod
    def deploy(self, params: DeployParams) -> DeployOutcome:
        """Start the engine, wait until healthy, smoke-test it. Raises DeployError."""

    @abstractmethod
    def teardown(self, params: DeployParams) -> bool:
        """Stop the engine of this deploy dir. True if one was stopped; idempotent."""

    @abstractmethod
    def log_tail(self, params: DeployParams, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the engine's log ('' if none), secrets redacted."""

    @abstractmethod
    def bench_command(self, params: DeployParams, bench_args: list[str]) -> list[str]:
        """argv that runs `vllm bench serve <bench_args>` next to the engine."""

    @abstractmethod
    def engine_version(self, params: DeployParams) -> str:
        """The engine's version or image, for host facts ('' if unknown)."""


# Paths on the host.

HOME_SCRIPT = 'printf "%s" "$HOME"'


def resolve_dir(params: DeployParams, path: str) -> str:
    """`path` with a leading `~/` replaced by the host user's home (argv items get no
    tilde expansion). On a dry run without a canned home the `~` stays as written."""
    if path != "~" and not path.startswith("~/"):
        return path
    home = params.host.run(["sh", "-c", HOME_SCRIPT], timeout_s=30).stdout.strip()
    if not home.startswith("/"):
        if params.dry_run:
            return path
        raise DeployError(f"{params.host.name}: cannot find the home directory for {path}")
    return home.rstrip("/") + path[1:]


def deploy_dir(params: DeployParams) -> str:
    """The deploy directory on the host, absolute (except on a dry run)."""
    return resolve_dir(params, params.deploy_dir).rstrip("/") or "/"


def with_resolved_dirs(params: DeployParams) -> DeployParams:
    """`params` with `deploy_dir` made absolute on the host (one round trip, done once)."""
    from dataclasses import replace

    resolved = deploy_dir(params)
    return params if resolved == params.deploy_dir else replace(params, deploy_dir=resolved)


def model_path(params: DeployParams, model_dir: str | None = None) -> str:
    """Where the model's weights live on the host: `<model_dir>/<model name>`."""
    base = (model_dir or params.model_dir).rstrip("/")
    return f"{base}/{params.recipe.model_name}"


def env_file_text(hf_token: str | None) -> str:
    """Contents of the 0600 env file: the HF token under both names engines read."""
    if not hf_token:
        return "# no Hugging Face token given\n"
    register_secret(hf_token)
    if not _TOKEN_RE.match(hf_token):
        raise ConfigError(
            "the Hugging Face token has characters a token never has (spaces, quotes, "
            "newlines...): check the HF_TOKEN environment variable or --hf-token"
        )
    return f"HF_TOKEN={hf_token}\nHUGGING_FACE_HUB_TOKEN={hf_token}\n"


def write_env_file(params: DeployParams, directory: str) -> str:
    """Write `<directory>/.env` with mode 0600 (always, so a stale token is replaced)."""
    path = f"{directory}/{ENV_FILE_NAME}"
    params.host.write_file(path, env_file_text(params.hf_token), mode=0o600)
    return path


def endpoint_url(params: DeployParams) -> str:
    """The base URL users reach the engine at from outside the host."""
    address = getattr(params.host, "address", None) or "127.0.0.1"
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return f"http://{address}:{params.port}/v1"


def local_url(params: DeployParams, path: str) -> str:
    """URL of `path` on the engine as seen from the host itself."""
    return f"http://127.0.0.1:{params.port}{path}"


# Health, with a deadline, and a probe that can say "the engine is gone".


def poll_health(
    params: DeployParams,
    probe: Callable[[], str | None],
    *,
    on_dead: Callable[[str], DeployError],
    what: str,
) -> float:
    """Call `probe` until it returns "healthy", the engine is reported dead, or the deadline.

    `probe` returns "healthy", None (not yet), or any other text (the engine is gone: the
    text says why). Returns the seconds it took. Raises DeployError on death or timeout.
    """
    if params.dry_run:
        probe()  # recorded, so the transcript shows the check
        return 0.0
    started = time.monotonic()
    deadline = started + params.health_timeout_s
    attempts = 0
    host_errors = 0
    while True:
        attempts += 1
        try:
            state = probe()
            host_errors = 0
        except HostError as error:
            # A slow or dropped probe is not a verdict on the engine; several in a row are.
            host_errors += 1
            if host_errors >= MAX_PROBE_HOST_ERRORS:
                raise
            logger.info("health probe on %s failed (%s); trying again", params.host.name,
                        error)
            state = None
        if state == "healthy":
            took = time.monotonic() - started
            logger.info("%s healthy after %.0f s", what, took)
            return took
        if state is not None:
            raise on_dead(state)
        if time.monotonic() >= deadline:
            raise DeployError(
                f"{params.host.name}: {what} did not become healthy within "
                f"{params.health_timeout_s:.0f} s ({attempts} checks of "
                f"{local_url(params, '/health')}); raise health_timeout_s if the model is "
                "large, or read the engine log below"
            )
        if attempts % 15 == 0:
            logger.info("waiting for %s to become healthy (%.0f s)", what,
                        time.monotonic() - started)
        time.sleep(min(HEALTH_POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))


def smoke_request_body(served_model_name: str) -> str:
    """JSON body of the chat completion the smoke test sends."""
    return json.dumps({
        "model": served_model_name,
        "messages": [{"role": "user", "content": SMOKE_PROMPT}],
        "max_tokens": SMOKE_MAX_TOKENS,
        "temperature": 0,
    })


def smoke_argv(params: DeployParams) -> list[str]:
    """curl argv that posts the smoke chat completion and prints the response body."""
    return [
        "curl", "-sS", "-m", str(SMOKE_TIMEOUT_S),
        "-H", "Content-Type: application/json",
        "-d", smoke_request_body(params.recipe.model_name),
        local_url(params, "/v1/chat/completions"),
    ]


def check_smoke_reply(host_name: str, text: str) -> str:
    """The reply's content from a chat completion response; DeployError if empty or bad."""
    try:
        data = json.loads(text)
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise DeployError(
            f"{host_name}: smoke test chat completion returned no reply: "
            f"{redact(text.strip()[:500]) or '(empty response)'}"
        ) from None
    if not isinstance(content, str) or not content.strip():
        raise DeployError(f"{host_name}: smoke test chat completion returned an empty reply")
    return content


def run_smoke_test(params: DeployParams) -> str:
    """Send one chat completion to the engine and require a non-empty reply."""
    result = params.host.run(smoke_argv(params), timeout_s=SMOKE_TIMEOUT_S + 30, check=False)
    if params.dry_run:
        return ""
    if not result.ok:
        raise DeployError(
            f"{params.host.name}: smoke test request failed (curl exit {result.exit_code}): "
            f"{result.output_tail(10)}"
        )
    reply = check_smoke_reply(params.host.name, result.stdout)
    logger.info("smoke test reply: %r", reply[:80])
    return reply


def deploy_error_with_log(message: str, log_tail: str) -> DeployError:
    """A DeployError whose text ends with the engine log tail, kept as `.engine_log_tail`."""
    log_tail = redact(log_tail or "")
    text = message
    if log_tail.strip():
        text += f"\n--- engine log (last lines) ---\n{log_tail}"
    error = DeployError(text)
    error.engine_log_tail = log_tail
    return error
