"""Prepare a host for a deploy: the deploy directory and the tools the runtime needs.

docker-compose needs docker, the compose plugin and the NVIDIA container toolkit; process
needs the engine's python with vLLM importable. Both need curl (health and smoke checks).
What is missing is installed with apt only when asked (`install_missing`); otherwise the
error names the host, what is missing, and the flag that installs it.
"""

from __future__ import annotations

import logging

from deplodock_dagster.deploy.params import DeployParams
from deplodock_dagster.deploy.runtimes.common import deploy_dir
from deplodock_dagster.errors import DeployError

logger = logging.getLogger(__name__)

_HAS_COMMAND = 'command -v "$1" >/dev/null 2>&1'
_HAS_MODULE = (
    "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec(sys.argv[1]) else 1)"
)
APT_TIMEOUT_S = 1800

# What is missing -> the apt steps that install it (run as root, or through sudo -n).
_INSTALL_STEPS: dict[str, list[list[str]]] = {
    "curl": [["apt-get", "install", "-y", "curl"]],
    "docker": [["apt-get", "install", "-y", "docker.io"]],
    "docker compose plugin": [["apt-get", "install", "-y", "docker-compose-v2"]],
    # Needs NVIDIA's apt repository, which GPU cloud images carry.
    "NVIDIA container toolkit": [
        ["apt-get", "install", "-y", "nvidia-container-toolkit"],
        ["nvidia-ctk", "runtime", "configure", "--runtime=docker"],
        ["systemctl", "restart", "docker"],
    ],
}


def _has_command(params: DeployParams, program: str) -> bool:
    return params.host.run(
        ["sh", "-c", _HAS_COMMAND, "deplodock-check", program], timeout_s=60, check=False
    ).ok


def missing_tools(params: DeployParams) -> list[str]:
    """What the runtime needs that the host lacks, in install order."""
    host = params.host
    missing = []
    if not _has_command(params, "curl"):
        missing.append("curl")
    if params.runtime == "docker-compose":
        if not _has_command(params, "docker"):
            missing.append("docker")
        if not host.run(["docker", "compose", "version"], timeout_s=60, check=False).ok:
            missing.append("docker compose plugin")
        if not _has_command(params, "nvidia-ctk"):
            missing.append("NVIDIA container toolkit")
    elif params.runtime == "process":
        check = host.run([params.engine_python, "-c", _HAS_MODULE, "vllm"],
                         timeout_s=120, check=False)
        if not check.ok:
            missing.append(f"vLLM in {params.engine_python}")
    return missing


def _sudo_prefix(params: DeployParams) -> list[str]:
    uid = params.host.run(["id", "-u"], timeout_s=30, check=False).stdout.strip()
    return [] if uid in ("0", "") else ["sudo", "-n"]


def install(params: DeployParams, missing: list[str]) -> None:
    """Install `missing` tools with apt (those apt can install)."""
    sudo = _sudo_prefix(params)
    steps = [["apt-get", "update"]]
    for tool in missing:
        steps += _INSTALL_STEPS.get(tool, [])
    for step in steps:
        logger.info("installing on %s: %s", params.host.name, " ".join(step))
        params.host.run(sudo + ["env", "DEBIAN_FRONTEND=noninteractive", *step],
                        timeout_s=APT_TIMEOUT_S)


def bootstrap(params: DeployParams) -> str:
    """Make the deploy directory and check (or install) the runtime's tools.

    Returns the deploy directory (absolute). Raises DeployError naming the host and what is
    missing when a tool is absent and `install_missing` is false, or cannot be installed.
    """
    host = params.host
    directory = deploy_dir(params)
    host.run(["mkdir", "-p", directory], timeout_s=60)

    missing = missing_tools(params)
    if missing and params.install_missing:
        installable = [tool for tool in missing if tool in _INSTALL_STEPS]
        if installable:
            install(params, installable)
            missing = missing_tools(params)
    if missing and not params.dry_run:
        if params.runtime == "process":
            hint = (
                "install vLLM in a venv on the host and pass its python with --engine-python "
                "(or DEPLODOCK_ENGINE_PYTHON)"
            )
            if any(not tool.startswith("vLLM") for tool in missing):
                hint += "; pass --install-missing to install the other tools with apt"
        else:
            hint = "pass --install-missing (install_missing=True) to install them with apt"
        raise DeployError(
            f"{host.name}: missing {', '.join(missing)} needed by the {params.runtime} "
            f"runtime: {hint}"
        )
    logger.info("host %s ready for the %s runtime", host.name, params.runtime)
    return directory
