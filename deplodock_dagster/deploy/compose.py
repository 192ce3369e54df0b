"""Docker compose files for the `docker-compose` runtime, and their check against the spec.

One engine service per instance (`engine_0`, `engine_1`, ...), each reserving its own GPUs.
With one instance the engine publishes the port itself; with several, an nginx `balancer`
service publishes it and spreads requests by least connections, and the engines publish
nothing on the host.

Safety: the file is built as data and dumped with yaml.safe_dump, so every recipe value is
quoted as YAML needs; the engine command is a list (no shell parses it); `$` in recipe values
is escaped so compose interpolation cannot pull host variables in; the HF token reaches the
containers only through `env_file` (written by the deploy with mode 0600), never inline.

compose-spec.json beside this module is the Compose Specification's JSON schema from the
compose-spec/compose-spec repository (Apache-2.0, see compose-spec.LICENSE), as bundled in
check-jsonschema 0.39.0 (sha256 d549057e...3ed10e64). To update it, take schema/
compose-spec.json from a newer release of either and run tests/test_compose.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from posixpath import isabs, join

from deplodock_dagster.deploy.nginx import (  # noqa: F401 (generate_nginx_conf re-exported)
    NGINX_CONF_NAME,
    NGINX_CONF_TARGET,
    engine_service_name,
    generate_nginx_conf,
)
from deplodock_dagster.errors import DeployError
from deplodock_dagster.recipe.engine_flags import container_command
from deplodock_dagster.recipe.types import ResolvedRecipe

logger = logging.getLogger(__name__)

BALANCER_SERVICE = "balancer"
BALANCER_IMAGE = "nginx:1.27-alpine"
ENGINE_CONTAINER_PORT = 8000  # every engine listens here inside its own container
ENGINE_SHM_SIZE = "16gb"

# The engine loads weights before /health answers: allow up to 10 min of start plus 30 min
# of polls (large models from a cold cache).
HEALTH_INTERVAL = "10s"
HEALTH_TIMEOUT = "10s"
HEALTH_RETRIES = 180
HEALTH_START_PERIOD = "600s"

# Environment names the deploy owns: a recipe's extra_env may not set them.
_RESERVED_ENV = {
    "HF_HOME": "the deploy points it at the model cache (model_dir)",
    "HF_TOKEN": "the token is a secret: it goes in the env file, never in a recipe",
    "HUGGING_FACE_HUB_TOKEN": "the token is a secret: it goes in the env file, never in a recipe",
}

_SCHEMA_RESOURCE = "compose-spec.json"


def _no_interpolation(value: str) -> str:
    """Escape `$` so compose keeps the text literally instead of substituting variables."""
    return value.replace("$", "$$")


def split_device_ids(
    recipe: ResolvedRecipe, gpu_device_ids: Sequence[int | str] | None
) -> list[list[str]] | None:
    """GPU device ids of each instance, or None when one instance takes every GPU.

    Without `gpu_device_ids` the VM is taken to have exactly recipe.gpu_count GPUs, numbered
    from 0. With them, there must be exactly recipe.gpu_count distinct ids.
    """
    per_instance = recipe.engine.gpus_per_instance
    instances = recipe.num_instances
    if instances < 1 or per_instance * instances != recipe.gpu_count:
        raise DeployError(
            f"{recipe.task_id}: gpu_count {recipe.gpu_count} is not a multiple of the "
            f"{per_instance} GPU(s) one engine instance uses; fix the recipe's variant"
        )

    if gpu_device_ids is None:
        if instances == 1:
            return None
        ids = [str(i) for i in range(recipe.gpu_count)]
    else:
        ids = [str(device).strip() for device in gpu_device_ids]
        bad = [device for device in ids if not device.isdigit()]
        if bad:
            raise DeployError(
                f"{recipe.task_id}: GPU device ids must be non-negative integers, got {bad}"
            )
        if len(set(ids)) != len(ids) or len(ids) != recipe.gpu_count:
            raise DeployError(
                f"{recipe.task_id}: needs {recipe.gpu_count} distinct GPU device ids, got "
                f"{list(gpu_device_ids)}"
            )
    return [ids[i * per_instance:(i + 1) * per_instance] for i in range(instances)]


def _environment(recipe: ResolvedRecipe, model_dir: str) -> dict[str, str]:
    env = {"HF_HOME": model_dir}
    for name, value in recipe.engine.extra_env:
        if name in _RESERVED_ENV:
            raise DeployError(
                f"{recipe.recipe_path}: extra_env.{name}: may not be set by a recipe "
                f"({_RESERVED_ENV[name]})"
            )
        env[name] = _no_interpolation(str(value))
    return env


def _port(target: int, published: int) -> dict:
    # Long syntax: no "host:container" string for YAML 1.1 readers to take for a number.
    return {"target": target, "published": str(published), "protocol": "tcp"}


def _gpu_reservation(device_ids: list[str] | None) -> dict:
    device: dict = {"driver": "nvidia", "capabilities": ["gpu"]}
    if device_ids is None:
        device["count"] = "all"
    else:
        device["device_ids"] = device_ids
    return {"resources": {"reservations": {"devices": [device]}}}


def _engine_service(
    recipe: ResolvedRecipe,
    *,
    model_dir: str,
    device_ids: list[str] | None,
    env_file: str,
    published_port: int | None,
) -> dict:
    command = container_command(
        recipe.engine,
        model_path=join(model_dir, recipe.model_name),
        served_model_name=recipe.model_name,
        host="0.0.0.0",
        port=ENGINE_CONTAINER_PORT,
    )
    service: dict = {
        "image": _no_interpolation(recipe.engine.image),
        "command": [_no_interpolation(item) for item in command],
        "deploy": _gpu_reservation(device_ids),
        "volumes": [{"type": "bind", "source": model_dir, "target": model_dir}],
        "env_file": [env_file],
        "environment": _environment(recipe, model_dir),
        "shm_size": ENGINE_SHM_SIZE,
        "ipc": "host",
        "healthcheck": {
            "test": ["CMD", "curl", "-fsS", f"http://localhost:{ENGINE_CONTAINER_PORT}/health"],
            "interval": HEALTH_INTERVAL,
            "timeout": HEALTH_TIMEOUT,
            "retries": HEALTH_RETRIES,
            "start_period": HEALTH_START_PERIOD,
        },
        "restart": "no",
    }
    if published_port is not None:
        service["ports"] = [_port(ENGINE_CONTAINER_PORT, published_port)]
    return service


def _balancer_service(num_instances: int, port: int) -> dict:
    return {
        "image": BALANCER_IMAGE,
        "ports": [_port(port, port)],
        "volumes": [
            {"type": "bind", "source": f"./{NGINX_CONF_NAME}", "target": NGINX_CONF_TARGET,
             "read_only": True},
        ],
        "depends_on": {
            engine_service_name(i): {"condition": "service_healthy"}
            for i in range(num_instances)
        },
        "healthcheck": {
            # busybox wget ships in the alpine image; /health goes through to an engine.
            "test": ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}/health"],
            "interval": HEALTH_INTERVAL,
            "timeout": HEALTH_TIMEOUT,
            "retries": 30,
        },
        "restart": "no",
    }


def generate_compose(
    recipe: ResolvedRecipe,
    *,
    model_dir: str,
    gpu_device_ids: Sequence[int | str] | None = None,
    port: int = 8000,
    env_file: str = ".env",
) -> str:
    """The compose file (YAML text) that serves `recipe` on `port` of the host.

    `model_dir` is the host's model cache (absolute); it is mounted at the same path and is
    HF_HOME, and the model is served from `<model_dir>/<model name>`. `gpu_device_ids` pins
    the GPUs when the VM has more than the recipe uses. `env_file` (relative to the compose
    file) carries the HF token. With several instances, write generate_nginx_conf(...) next
    to the compose file as NGINX_CONF_NAME.
    """
    import yaml

    if not isabs(model_dir):
        raise DeployError(f"model dir {model_dir!r} must be an absolute path on the host")
    if not 1 <= int(port) <= 65535:
        raise DeployError(f"port {port} is not a TCP port (1-65535)")
    port = int(port)

    per_instance_ids = split_device_ids(recipe, gpu_device_ids)
    instances = recipe.num_instances
    services: dict = {}
    for i in range(instances):
        services[engine_service_name(i)] = _engine_service(
            recipe,
            model_dir=model_dir,
            device_ids=per_instance_ids[i] if per_instance_ids else None,
            env_file=env_file,
            published_port=port if instances == 1 else None,
        )
    if instances > 1:
        services[BALANCER_SERVICE] = _balancer_service(instances, port)

    # A comment line: line breaks in names would end it, so they are flattened.
    label = " ".join(recipe.task_id.splitlines())
    balancer = ", nginx balancer" if instances > 1 else ""
    header = f"# Generated by deplodock for {label}: {instances} engine instance(s){balancer}.\n"
    logger.debug("compose for %s: %d instance(s), port %d", recipe.task_id, instances, port)
    body = yaml.safe_dump(
        {"services": services}, sort_keys=False, default_flow_style=False, width=10_000
    )
    return header + body


@lru_cache(maxsize=1)
def compose_schema() -> dict:
    """The Compose Specification JSON schema, vendored from compose-spec/compose-spec."""
    text = resources.files(__package__).joinpath(_SCHEMA_RESOURCE).read_text("utf-8")
    return json.loads(text)


def compose_errors(text: str) -> list[str]:
    """Every way `text` breaks the Compose Specification, as `path: message` lines."""
    import yaml

    try:
        import jsonschema
    except ImportError as error:  # a test extra today; deploys that validate need it
        raise DeployError(
            "checking compose files needs the jsonschema package: pip install 'jsonschema>=4.20'"
        ) from error

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return [f"not valid YAML: {error}"]
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '<top>'}: {error.message}"
        for error in errors
    ]


def validate_compose(text: str) -> None:
    """Raise DeployError listing every violation of the Compose Specification in `text`."""
    errors = compose_errors(text)
    if errors:
        raise DeployError(
            "compose file does not match the Compose Specification:\n  " + "\n  ".join(errors)
        )
