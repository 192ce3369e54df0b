"""The benchmark workload: `vllm bench serve` next to the engine, and its results copied back.

The run uses the recipe's random-dataset parameters, sends chat completions to the engine
on the host's loopback, and saves its JSON (`--save-result`) in the deploy dir; that JSON is
the primary result and the printed table is kept for people. A run counts as a success only
when every prompt completed and none failed; otherwise the numbers are kept and the error
says how many requests failed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from importlib import resources

from deplodock_dagster.bench.types import BenchmarkMetrics
from deplodock_dagster.deploy.params import DeployParams
from deplodock_dagster.deploy.runtimes import get_runtime
from deplodock_dagster.deploy.runtimes.common import (
    deploy_dir,
    local_url,
    model_path,
    with_resolved_dirs,
)
from deplodock_dagster.errors import BenchmarkError, DeplodockError, HostError
from deplodock_dagster.hosts.base import join_command
from deplodock_dagster.recipe.types import BenchmarkSpec
from deplodock_dagster.secrets import redact

logger = logging.getLogger(__name__)

DRIVER_NAME = "vllm_bench_driver.py"
BENCH_SUBDIR = "bench"
RESULT_FILENAME = "result.json"
PERCENTILE_METRICS = "ttft,tpot,itl,e2el"
DEFAULT_BENCH_TIMEOUT_S = 4 * 3600
RESULT_COPY_ATTEMPTS = 3


@dataclass
class WorkloadResult:
    """What one benchmark run left: the command, its output, its JSON and the verdict.

    `error` is None on success; otherwise it says what failed, and `metrics` and
    `result_json` hold whatever numbers the run still produced.
    """

    command: str  # redacted
    table_text: str  # what `vllm bench serve` printed (the result table among it)
    result_json: str | None
    metrics: BenchmarkMetrics | None
    error: str | None = None
    exit_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def bench_args(
    spec: BenchmarkSpec, *, served_model_name: str, base_url: str, tokenizer: str,
    result_dir: str, result_filename: str = RESULT_FILENAME,
) -> list[str]:
    """Arguments of `vllm bench serve` for `spec` (argv items, no shell)."""
    args = [
        "--backend", "openai-chat",
        "--endpoint", "/v1/chat/completions",
        "--base-url", base_url,
        "--model", served_model_name,
        "--tokenizer", tokenizer,
        "--dataset-name", spec.dataset_name,
        "--random-input-len", str(spec.random_input_len),
        "--random-output-len", str(spec.random_output_len),
        "--num-prompts", str(spec.num_prompts),
        "--max-concurrency", str(spec.max_concurrency),
        "--percentile-metrics", PERCENTILE_METRICS,
        "--save-result",
        "--result-dir", result_dir,
        "--result-filename", result_filename,
    ]
    if spec.ignore_eos:
        args.append("--ignore-eos")
    return args + list(spec.extra_args)


def driver_source() -> str:
    """Source of bench/vllm_bench_driver.py, copied to hosts for the process runtime."""
    return resources.files("deplodock_dagster.bench").joinpath(DRIVER_NAME).read_text("utf-8")


def check_complete(metrics: BenchmarkMetrics, num_prompts: int) -> str | None:
    """None if every prompt completed and none failed, else what went wrong."""
    if metrics.failed_requests or metrics.successful_requests != num_prompts:
        return (
            f"benchmark incomplete: {metrics.successful_requests} of {num_prompts} requests "
            f"completed, {metrics.failed_requests} failed (numbers kept)"
        )
    return None


def _read_result(host, path: str) -> bytes:
    """Read `path` from the host; a dropped connection is retried (reading is safe to repeat,
    and the benchmark behind the file is not)."""
    for attempt in range(1, RESULT_COPY_ATTEMPTS + 1):
        try:
            return host.read_file(path)
        except HostError as error:
            if not error.transient or attempt == RESULT_COPY_ATTEMPTS:
                raise
            logger.warning("%s: copying %s failed (%s); trying again", host.name, path, error)
            time.sleep(attempt)
    raise AssertionError("unreachable")


def run_benchmark_workload(
    params: DeployParams, *, timeout_s: float = DEFAULT_BENCH_TIMEOUT_S
) -> WorkloadResult:
    """Run `vllm bench serve` against the deployed engine and bring its results back.

    Raises BenchmarkError when the run produced no JSON at all (the message carries the
    output tail) and HostError when the host cannot be reached; a run with failed requests
    returns a WorkloadResult with `error` set and the numbers kept.
    """
    from deplodock_dagster.bench.parse import parse_bench_json

    runtime = get_runtime(params.runtime)
    params = with_resolved_dirs(params)
    host = params.host
    directory = deploy_dir(params)
    result_dir = f"{directory}/{BENCH_SUBDIR}"
    spec = params.recipe.benchmark

    host.run(["rm", "-rf", result_dir], timeout_s=60)
    host.run(["mkdir", "-p", result_dir], timeout_s=60)
    if runtime.name == "process":
        host.write_file(f"{directory}/{DRIVER_NAME}", driver_source())

    args = bench_args(
        spec,
        served_model_name=params.recipe.model_name,
        base_url=local_url(params, ""),
        tokenizer=model_path(params),
        result_dir=result_dir,
    )
    argv = runtime.bench_command(params, args)
    command = join_command(argv)
    logger.info("benchmark on %s: %d prompts, concurrency %d", host.name, spec.num_prompts,
                spec.max_concurrency)
    run = host.run(argv, timeout_s=timeout_s, check=False)
    table = redact(run.stdout)
    if params.dry_run:
        return WorkloadResult(command, table, None, None, None, run.exit_code)

    result_path = f"{result_dir}/{RESULT_FILENAME}"
    try:
        result_json = redact(_read_result(host, result_path).decode("utf-8", "replace"))
    except HostError as error:
        if error.transient:
            raise
        raise BenchmarkError(
            f"{host.name}: vllm bench serve (exit {run.exit_code}) wrote no result at "
            f"{result_path}:\n{run.output_tail(30)}"
        ) from None

    try:
        metrics = parse_bench_json(result_json, source=result_path)
    except DeplodockError as error:
        return WorkloadResult(command, table, result_json, None, str(error), run.exit_code)
    error = check_complete(metrics, spec.num_prompts)
    if error is None and not run.ok:
        error = f"vllm bench serve exited {run.exit_code}: {run.output_tail(10)}"
    if error:
        logger.warning("%s: %s", host.name, error)
    else:
        logger.info("benchmark done: %.1f output tok/s", metrics.output_throughput_tok_s)
    return WorkloadResult(command, table, result_json, metrics, error, run.exit_code)
