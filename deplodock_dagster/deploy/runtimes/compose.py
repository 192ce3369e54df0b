"""The `docker-compose` runtime: the engine in its official image under docker compose.

The sequence (the predecessor tool's): write the compose file, the nginx balancer config
when a variant runs several instances, and the 0600 env file holding the HF token; pull the
images; download the model into the host's cache (inside the engine image, skipped when the
weights are there); `down` anything left from before; `up -d --wait`; poll /health; smoke-test
one chat completion; report the endpoint. Teardown is `docker compose down`.
"""

from __future__ import annotations

import logging

from deplodock_dagster.deploy.params import DeployParams
from deplodock_dagster.deploy.runtimes.common import (
    ENV_FILE_NAME,
    HEALTH_PROBE_HOST_TIMEOUT_S,
    HEALTH_PROBE_TIMEOUT_S,
    LOG_TAIL_LINES,
    DeployOutcome,
    Runtime,
    deploy_dir,
    deploy_error_with_log,
    endpoint_url,
    local_url,
    model_path,
    poll_health,
    run_smoke_test,
    write_env_file,
)
from deplodock_dagster.errors import CommandFailed, DeployError
from deplodock_dagster.secrets import redact

logger = logging.getLogger(__name__)

COMPOSE_FILE = "docker-compose.yml"
PROJECT_NAME = "deplodock"
PULL_TIMEOUT_S = 3600
DOWNLOAD_TIMEOUT_S = 6 * 3600
# `vllm bench serve` for engines whose image has no vLLM (SGLang).
DEFAULT_BENCH_IMAGE = "vllm/vllm-openai:v0.11.0"

# Inside the engine image: $1 model, then download args. `hf` is the newer name of the CLI.
_DOWNLOAD_SCRIPT = (
    'if command -v hf >/dev/null 2>&1; then exec hf download "$@"; fi; '
    'exec huggingface-cli download "$@"'
)


class ComposeRuntime(Runtime):
    """See the module docstring."""

    name = "docker-compose"

    def compose_argv(self, params: DeployParams, *args: str) -> list[str]:
        """`docker compose` with this deploy's project, directory and file, then `args`."""
        directory = deploy_dir(params)
        return [
            "docker", "compose", "--project-name", PROJECT_NAME,
            "--project-directory", directory, "--file", f"{directory}/{COMPOSE_FILE}", *args,
        ]

    def compose_text(self, params: DeployParams) -> str:
        """The compose file for this deploy (holds no secret: the token is in .env)."""
        from deplodock_dagster.deploy.compose import generate_compose

        return generate_compose(
            params.recipe,
            model_dir=params.model_dir,
            gpu_device_ids=params.gpu_device_ids,
            port=params.port,
            env_file=ENV_FILE_NAME,
        )

    def _compose(self, params: DeployParams, *args: str, timeout_s: float, what: str):
        try:
            return params.host.run(self.compose_argv(params, *args), timeout_s=timeout_s)
        except CommandFailed as error:
            raise deploy_error_with_log(
                f"{params.host.name}: docker compose {what} failed (exit {error.exit_code}):"
                f"\n{error.output_tail}",
                self.log_tail(params) if what.startswith("up") else "",
            ) from None

    def _ensure_model(self, params: DeployParams, env_file: str) -> None:
        target = model_path(params)
        if params.host.file_exists(f"{target}/config.json"):
            logger.info("model %s already at %s", params.recipe.model_name, target)
            return
        logger.info("downloading %s to %s", params.recipe.model_name, target)
        model_dir = params.model_dir
        argv = [
            "docker", "run", "--rm", "--env-file", env_file,
            "--env", f"HF_HOME={model_dir}", "--volume", f"{model_dir}:{model_dir}",
            "--entrypoint", "bash", params.recipe.engine.image,
            "-c", _DOWNLOAD_SCRIPT, "deplodock-download",
            params.recipe.model_name, "--local-dir", target,
        ]
        result = params.host.run(argv, timeout_s=DOWNLOAD_TIMEOUT_S, check=False)
        if not result.ok and not params.dry_run:
            raise DeployError(
                f"{params.host.name}: could not download model {params.recipe.model_name} "
                f"to {target} (exit {result.exit_code}): {result.output_tail(10)}\n"
                "Check the HF token (HF_TOKEN / --hf-token) for gated models, the network, "
                f"and free space under {model_dir}."
            )

    def deploy(self, params: DeployParams) -> DeployOutcome:
        from deplodock_dagster.deploy.compose import NGINX_CONF_NAME, generate_nginx_conf

        host = params.host
        directory = deploy_dir(params)
        text = self.compose_text(params)

        host.write_file(f"{directory}/{COMPOSE_FILE}", text)
        instances = params.recipe.num_instances
        if instances > 1:
            host.write_file(f"{directory}/{NGINX_CONF_NAME}",
                            generate_nginx_conf(instances, params.port))
        env_file = write_env_file(params, directory)

        logger.info("pulling images on %s", host.name)
        self._compose(params, "pull", timeout_s=PULL_TIMEOUT_S, what="pull")
        self._ensure_model(params, env_file)
        self._compose(params, "down", "--remove-orphans", timeout_s=600, what="down")
        logger.info("starting %d engine instance(s) on %s", instances, host.name)
        self._compose(
            params, "up", "--detach", "--wait", "--wait-timeout",
            str(int(params.health_timeout_s)),
            timeout_s=params.health_timeout_s + 300, what="up",
        )

        outcome = DeployOutcome(
            endpoint=endpoint_url(params), runtime=self.name, deploy_spec=redact(text),
            served_model_name=params.recipe.model_name,
            handle={"compose_file": f"{directory}/{COMPOSE_FILE}", "project": PROJECT_NAME,
                    "deploy_dir": directory},
            dry_run=params.dry_run,
        )

        def probe() -> str | None:
            check = host.run(
                ["curl", "-sf", "-m", str(HEALTH_PROBE_TIMEOUT_S), "-o", "/dev/null",
                 local_url(params, "/health")],
                timeout_s=HEALTH_PROBE_HOST_TIMEOUT_S, check=False,
            )
            return "healthy" if check.ok or params.dry_run else None

        try:
            poll_health(params, probe, on_dead=DeployError, what=f"engine on {host.name}")
            run_smoke_test(params)
        except DeployError as error:
            raise deploy_error_with_log(str(error), self.log_tail(params)) from None
        if not params.dry_run:
            logger.info("engine serves %s at %s", params.recipe.model_name, outcome.endpoint)
        return outcome

    def teardown(self, params: DeployParams) -> bool:
        result = params.host.run(
            self.compose_argv(params, "down", "--remove-orphans"), timeout_s=600, check=False
        )
        if result.ok or params.dry_run:
            return True
        tail = result.output_tail(10)
        if "no configuration file" in tail.lower() or "no such file" in tail.lower():
            return False  # nothing was deployed from this directory
        raise DeployError(
            f"{params.host.name}: docker compose down failed (exit {result.exit_code}): "
            f"{tail}\nStop the containers by hand: "
            f"docker compose --project-name {PROJECT_NAME} down"
        )

    def log_tail(self, params: DeployParams, lines: int = LOG_TAIL_LINES) -> str:
        result = params.host.run(
            self.compose_argv(params, "logs", "--no-color", "--tail", str(int(lines))),
            timeout_s=120, check=False,
        )
        return redact(result.stdout) if result.ok else ""

    def bench_image(self, params: DeployParams) -> str:
        """The image `vllm bench serve` runs in: the engine's, if it is a vLLM image."""
        engine = params.recipe.engine
        return engine.image if engine.engine == "vllm" else DEFAULT_BENCH_IMAGE

    def bench_command(self, params: DeployParams, bench_args: list[str]) -> list[str]:
        directory = deploy_dir(params)
        model_dir = params.model_dir
        return [
            "docker", "run", "--rm", "--network", "host",
            "--env-file", f"{directory}/{ENV_FILE_NAME}",
            "--volume", f"{model_dir}:{model_dir}", "--volume", f"{directory}:{directory}",
            "--entrypoint", "vllm", self.bench_image(params), "bench", "serve", *bench_args,
        ]

    def engine_version(self, params: DeployParams) -> str:
        return params.recipe.engine.image
