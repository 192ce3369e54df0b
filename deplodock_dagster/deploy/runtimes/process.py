"""The `process` runtime: the engine as a plain process on the host, from a venv with vLLM.

For hosts without Docker (and this machine). The engine runs detached in a session of its
own (setsid + nohup), so stopping it means signalling that whole process group; its pid and
log live in the deploy dir (`engine.pid`, `engine.log`). The HF token reaches the engine
only through the 0600 env file, which the launcher script sources; it is never an argv item.
"""

from __future__ import annotations

import logging
import posixpath

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
from deplodock_dagster.errors import DeployError, HostError
from deplodock_dagster.hosts.base import join_command
from deplodock_dagster.recipe.engine_flags import process_argv
from deplodock_dagster.secrets import redact

logger = logging.getLogger(__name__)

PID_FILE = "engine.pid"
LOG_FILE = "engine.log"
BIND_HOST = "0.0.0.0"
STOP_GRACE_S = 20
STOP_TIMEOUT_S = STOP_GRACE_S + 180  # grace, plus a slow SSH session start
DOWNLOAD_TIMEOUT_S = 6 * 3600

# $1 deploy dir, $2 env file, $3 log file, $4 pid file, then the command (env NAME=v ... argv).
# The engine's pid is its session and process group id (setsid in a non-leader child execs
# in place), which is what teardown signals.
_LAUNCH_SCRIPT = """set -eu
dir=$1; env_file=$2; log=$3; pid_file=$4; shift 4
cd "$dir"
if [ -f "$env_file" ]; then set -a; . "$env_file"; set +a; fi
setsid nohup "$@" >"$log" 2>&1 </dev/null &
echo $! >"$pid_file"
echo $!
"""

# $1 pid, $2 health URL, $3 curl timeout (s). Exit 0 healthy, 3 the engine's processes are
# gone, anything else not yet.
# Zombies (stat Z) count as gone: a reparented engine may never be reaped on some hosts.
_PROBE_SCRIPT = """pid=$1; url=$2
ps -o stat= -s "$pid" 2>/dev/null | grep -qv '^ *Z' || exit 3
exec curl -sf -m "$3" -o /dev/null "$url"
"""

# $1 pid file, $2 grace seconds. Prints "stopped PID", "none", or "still running PID" (exit 1).
_STOP_SCRIPT = """pid_file=$1; grace=$2
[ -f "$pid_file" ] || { echo none; exit 0; }
pid=$(cat "$pid_file")
case "$pid" in ''|*[!0-9]*) rm -f "$pid_file"; echo none; exit 0;; esac
alive() { ps -o stat= -s "$pid" 2>/dev/null | grep -qv '^ *Z'; }
if alive; then
  kill -TERM -- "-$pid" 2>/dev/null || true
  i=0
  while alive && [ "$i" -lt "$grace" ]; do sleep 1; i=$((i+1)); done
  if alive; then kill -KILL -- "-$pid" 2>/dev/null || true; sleep 1; fi
  # Anything left in the session that left the group (rare) goes too.
  for p in $(ps -o pid= -s "$pid" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  sleep 1
  if alive; then echo "still running $pid"; exit 1; fi
  rm -f "$pid_file"; echo "stopped $pid"; exit 0
fi
rm -f "$pid_file"; echo none
"""

# $1 env file, $2 venv bin dir, then download args. `hf` is the newer name of the CLI.
_DOWNLOAD_SCRIPT = """env_file=$1; bin=$2; shift 2
if [ -f "$env_file" ]; then set -a; . "$env_file"; set +a; fi
if [ -x "$bin/hf" ]; then exec "$bin/hf" download "$@"; fi
exec "$bin/huggingface-cli" download "$@"
"""

_VERSION_CODE = "import vllm; print(vllm.__version__)"


class ProcessRuntime(Runtime):
    """See the module docstring."""

    name = "process"

    # Files.

    def _paths(self, params: DeployParams) -> dict[str, str]:
        directory = deploy_dir(params)
        return {
            "dir": directory,
            "pid": f"{directory}/{PID_FILE}",
            "log": f"{directory}/{LOG_FILE}",
            "env": f"{directory}/{ENV_FILE_NAME}",
        }

    def engine_env(self, params: DeployParams) -> list[str]:
        """`NAME=value` items for `env`: the recipe's extra_env and the GPU pinning."""
        items = [f"{name}={value}" for name, value in params.recipe.engine.extra_env]
        if params.gpu_device_ids:
            ids = ",".join(str(int(i)) for i in params.gpu_device_ids)
            items.append(f"CUDA_VISIBLE_DEVICES={ids}")
        return items

    def engine_argv(self, params: DeployParams) -> list[str]:
        """The full engine command: `env NAME=v ... python -m <server> <args>`."""
        argv = process_argv(
            params.recipe.engine,
            params.engine_python,
            model_path=model_path(params),
            served_model_name=params.recipe.model_name,
            host=BIND_HOST,
            port=params.port,
        )
        env = self.engine_env(params)
        return (["env", *env] if env else []) + argv

    # Steps.

    def _ensure_model(self, params: DeployParams, env_file: str) -> None:
        target = model_path(params)
        if params.host.file_exists(f"{target}/config.json"):
            logger.info("model %s already at %s", params.recipe.model_name, target)
            return
        logger.info("downloading %s to %s", params.recipe.model_name, target)
        bin_dir = posixpath.dirname(params.engine_python)
        result = params.host.run(
            ["bash", "-c", _DOWNLOAD_SCRIPT, "deplodock-download", env_file, bin_dir,
             params.recipe.model_name, "--local-dir", target],
            timeout_s=DOWNLOAD_TIMEOUT_S, check=False,
        )
        if not result.ok and not params.dry_run:
            raise DeployError(
                f"{params.host.name}: could not download model {params.recipe.model_name} "
                f"to {target} (exit {result.exit_code}): {result.output_tail(10)}\n"
                f"Put the weights at {target} (with config.json), or check the network and "
                "the HF token (HF_TOKEN / --hf-token) for gated models."
            )

    def _check_port_free(self, params: DeployParams) -> None:
        # curl exits 0 (or 22 with -f) whenever something answers HTTP on the port.
        result = params.host.run(
            ["curl", "-s", "-m", "3", "-o", "/dev/null", local_url(params, "/health")],
            timeout_s=30, check=False,
        )
        if result.ok and not params.dry_run:
            raise DeployError(
                f"{params.host.name}: port {params.port} already serves HTTP: another engine "
                "is running there. Tear it down (deplodock deploy ... --teardown) or pick "
                "another port."
            )

    def deploy(self, params: DeployParams) -> DeployOutcome:
        paths = self._paths(params)
        host = params.host

        # A previous engine of this deploy dir goes first, as `compose down` would.
        self.teardown(params)
        self._check_port_free(params)
        env_file = write_env_file(params, paths["dir"])
        self._ensure_model(params, env_file)

        argv = self.engine_argv(params)
        spec = join_command(argv)
        logger.info("starting engine on %s: %s", host.name, spec)
        result = host.run(
            ["bash", "-c", _LAUNCH_SCRIPT, "deplodock-launch",
             paths["dir"], paths["env"], paths["log"], paths["pid"], *argv],
            timeout_s=60,
        )
        pid = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        handle = {"pid": pid, "log_path": paths["log"], "pid_path": paths["pid"],
                  "deploy_dir": paths["dir"]}
        outcome = DeployOutcome(
            endpoint=endpoint_url(params), runtime=self.name, deploy_spec=spec,
            served_model_name=params.recipe.model_name, handle=handle,
            dry_run=params.dry_run,
        )
        if params.dry_run:
            return outcome
        if not pid.isdigit():
            raise DeployError(f"{host.name}: the engine launcher printed no pid: {result.stdout!r}")

        what = f"engine (pid {pid}) on {host.name}"

        def probe() -> str | None:
            check = host.run(
                ["bash", "-c", _PROBE_SCRIPT, "deplodock-probe", pid,
                 local_url(params, "/health"), str(HEALTH_PROBE_TIMEOUT_S)],
                timeout_s=HEALTH_PROBE_HOST_TIMEOUT_S, check=False,
            )
            if check.exit_code == 0:
                return "healthy"
            if check.exit_code == 3:
                return "exited"
            return None

        def on_dead(_: str) -> DeployError:
            return deploy_error_with_log(
                f"{host.name}: the engine (pid {pid}) exited while starting; "
                f"its log is {paths['log']}",
                self.log_tail(params),
            )

        try:
            poll_health(params, probe, on_dead=on_dead, what=what)
        except DeployError as error:
            if getattr(error, "engine_log_tail", None) is None:
                error = deploy_error_with_log(str(error), self.log_tail(params))
            raise error from None
        try:
            run_smoke_test(params)
        except DeployError as error:
            raise deploy_error_with_log(str(error), self.log_tail(params)) from None
        if not params.dry_run:
            logger.info("engine serves %s at %s", params.recipe.model_name, outcome.endpoint)
        return outcome

    def teardown(self, params: DeployParams) -> bool:
        paths = self._paths(params)
        argv = ["bash", "-c", _STOP_SCRIPT, "deplodock-stop", paths["pid"], str(STOP_GRACE_S)]
        try:
            result = params.host.run(argv, timeout_s=STOP_TIMEOUT_S, check=False)
        except HostError as error:
            # The stop script is idempotent: one more try before giving up loudly.
            logger.warning("stopping the engine on %s failed (%s); trying once more",
                           params.host.name, error)
            result = params.host.run(argv, timeout_s=STOP_TIMEOUT_S, check=False)
        if params.dry_run:
            return True
        out = result.stdout.strip()
        if not result.ok:
            raise DeployError(
                f"{params.host.name}: could not stop the engine ({out or result.output_tail(5)});"
                f" kill its process group by hand: kill -KILL -- -<pid in {paths['pid']}>"
            )
        if out.startswith("stopped"):
            logger.info("engine %s on %s stopped", out.split()[-1], params.host.name)
            return True
        return False

    def log_tail(self, params: DeployParams, lines: int = LOG_TAIL_LINES) -> str:
        paths = self._paths(params)
        result = params.host.run(
            ["tail", "-n", str(int(lines)), paths["log"]], timeout_s=30, check=False
        )
        return redact(result.stdout) if result.ok else ""

    def bench_command(self, params: DeployParams, bench_args: list[str]) -> list[str]:
        from deplodock_dagster.bench.workload import DRIVER_NAME

        env = [f"{name}={value}" for name, value in params.recipe.engine.extra_env]
        driver = f"{deploy_dir(params)}/{DRIVER_NAME}"
        return (["env", *env] if env else []) + [params.engine_python, driver, *bench_args]

    def engine_version(self, params: DeployParams) -> str:
        result = params.host.run(
            [params.engine_python, "-c", _VERSION_CODE], timeout_s=300, check=False
        )
        lines = result.stdout.strip().splitlines()
        return f"vllm {lines[-1]}" if result.ok and lines else ""

