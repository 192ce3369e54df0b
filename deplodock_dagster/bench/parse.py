"""Read what `vllm bench serve` produces, and name the files results are kept in.

Two inputs carry the same numbers:

- the JSON that `--save-result` writes (keys such as `completed`, `total_token_throughput`,
  `mean_ttft_ms`), read by `parse_bench_json`;
- the table it prints under a "Serving Benchmark Result" banner, read by `parse_bench_table`.
  The table may sit inside other output (engine logs before it, a compose file or
  interpreter shutdown noise after it), as in the archived `*_vllm_benchmark.txt` files.

File names: the new scheme is `{gpu}x{count}[_{sweep}]_vllm_benchmark` (`h100x8_vllm_benchmark`);
the older one is `{gpu}_x_{count}_{org}_{model}_vllm_benchmark.txt`, kept readable so an
existing archive keeps working.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from deplodock_dagster.bench.types import BenchmarkMetrics
from deplodock_dagster.errors import BenchmarkError

logger = logging.getLogger(__name__)

BENCH_SUFFIX = "_vllm_benchmark"
LEGACY_SUFFIX = "_vllm_benchmark.txt"
BANNER = "Serving Benchmark Result"

# `--save-result` JSON key -> BenchmarkMetrics field.
_JSON_KEYS = {
    "completed": "successful_requests",
    "failed": "failed_requests",
    "duration": "duration_s",
    "total_input_tokens": "total_input_tokens",
    "total_output_tokens": "total_output_tokens",
    "request_throughput": "request_throughput_rps",
    "output_throughput": "output_throughput_tok_s",
    "total_token_throughput": "total_token_throughput_tok_s",
    "max_concurrency": "max_concurrency",
    "max_output_tokens_per_s": "peak_output_throughput_tok_s",
}
for _stat in ("mean", "median", "p99"):
    for _metric in ("ttft", "tpot", "itl", "e2el"):
        _JSON_KEYS[f"{_stat}_{_metric}_ms"] = f"{_stat}_{_metric}_ms"

# Printed table label (lower case, spaces collapsed) -> BenchmarkMetrics field. vLLM has
# spelled "Total Token throughput" both with and without the capital T.
_TABLE_LABELS = {
    "successful requests": "successful_requests",
    "failed requests": "failed_requests",
    "maximum request concurrency": "max_concurrency",
    "benchmark duration (s)": "duration_s",
    "total input tokens": "total_input_tokens",
    "total generated tokens": "total_output_tokens",
    "request throughput (req/s)": "request_throughput_rps",
    "output token throughput (tok/s)": "output_throughput_tok_s",
    "peak output token throughput (tok/s)": "peak_output_throughput_tok_s",
    "total token throughput (tok/s)": "total_token_throughput_tok_s",
}
for _stat, _label in (("mean", "mean"), ("median", "median"), ("p99", "p99")):
    for _metric in ("ttft", "tpot", "itl", "e2el"):
        _TABLE_LABELS[f"{_label} {_metric} (ms)"] = f"{_stat}_{_metric}_ms"

_INT_FIELDS = {
    "successful_requests",
    "failed_requests",
    "total_input_tokens",
    "total_output_tokens",
    "max_concurrency",
}
# Fields without a default in BenchmarkMetrics: a result without them is not a result.
_REQUIRED = [f.name for f in fields(BenchmarkMetrics) if f.default is MISSING]

_TABLE_LINE = re.compile(r"^\s*(?P<label>[A-Za-z][^:]*?)\s*:\s*(?P<value>\S+)\s*$")
_RULE_LINE = re.compile(r"^\s*=+\s*$")


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def _number(field: str, value: object, source: str | None, key: str) -> int | float | None:
    """Convert one value to the field's type, or raise naming the file and key."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BenchmarkError(f"{_where(source)}{key}: expected a number, got {value!r}")
    try:
        number = float(str(value).replace(",", ""))
    except ValueError:
        raise BenchmarkError(
            f"{_where(source)}{key}: expected a number, got {value!r}"
        ) from None
    if number != number:  # NaN: vLLM writes it for stats over zero requests
        return None
    return int(round(number)) if field in _INT_FIELDS else number


def _build(values: dict, source: str | None, what: str) -> BenchmarkMetrics:
    """BenchmarkMetrics from field values, with one clear error listing what is missing."""
    if "failed_requests" not in values and "successful_requests" in values:
        values["failed_requests"] = 0  # older vLLM releases print no "Failed requests" line
    missing = [name for name in _REQUIRED if values.get(name) is None]
    if missing:
        raise BenchmarkError(
            f"{_where(source)}{what} lacks {', '.join(missing)}: not a complete "
            "`vllm bench serve` result (did the benchmark finish?)"
        )
    return BenchmarkMetrics(**values)


def parse_bench_json(text_or_dict: str | bytes | dict, source: str | None = None
                     ) -> BenchmarkMetrics:
    """Metrics from the JSON `vllm bench serve --save-result` writes.

    `source` (a file name) is only used in error messages. Per-request arrays and keys
    this project does not keep are ignored.
    """
    if isinstance(text_or_dict, dict):
        data = text_or_dict
    else:
        try:
            data = json.loads(text_or_dict)
        except ValueError as error:
            raise BenchmarkError(
                f"{_where(source)}not valid JSON ({error}); expected the file "
                "`vllm bench serve --save-result` writes"
            ) from error
    if not isinstance(data, dict):
        raise BenchmarkError(f"{_where(source)}expected a JSON object, got {type(data).__name__}")

    values = {}
    for key, field in _JSON_KEYS.items():
        if key in data:
            values[field] = _number(field, data[key], source, key)
    return _build(values, source, "the JSON result")


def find_bench_table(text: str) -> list[str] | None:
    """The lines of the first "Serving Benchmark Result" table in `text`, or None."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if BANNER in line), None)
    if start is None:
        return None
    table = []
    for line in lines[start + 1:]:
        if _RULE_LINE.match(line):
            break
        table.append(line)
    if any(BANNER in line for line in lines[start + 1 + len(table):]):
        logger.warning("more than one benchmark table in one output; reading the first")
    return table


def parse_bench_table(text: str, source: str | None = None) -> BenchmarkMetrics:
    """Metrics from the table `vllm bench serve` prints.

    Text before the "Serving Benchmark Result" banner and after its closing rule of `=` is
    ignored. `source` (a file name) is only used in error messages.
    """
    table = find_bench_table(text)
    if table is None:
        raise BenchmarkError(
            f"{_where(source)}no '{BANNER}' table found: expected the output of "
            "`vllm bench serve`"
        )
    values = {}
    for line in table:
        match = _TABLE_LINE.match(line)
        if not match:
            continue  # section rules such as "----Time to First Token----"
        label = " ".join(match["label"].lower().split())
        field = _TABLE_LABELS.get(label)
        if field is None:
            logger.debug("ignoring benchmark table line %r", line.strip())
            continue
        values[field] = _number(field, match["value"], source, match["label"].strip())
    return _build(values, source, "the benchmark table")


def parse_bench_file(path: str | Path) -> BenchmarkMetrics:
    """Metrics from a saved JSON result or a printed table, chosen by the file's content."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise BenchmarkError(f"{path}: cannot read benchmark result: {error}") from error
    if text.lstrip().startswith("{"):
        return parse_bench_json(text, source=str(path))
    return parse_bench_table(text, source=str(path))


# --- file names -------------------------------------------------------------------------

_GPU_SHORT = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9.=-]+")
_LEGACY_NAME = re.compile(
    r"^(?P<gpu>[A-Za-z0-9][A-Za-z0-9-]*?)_x_(?P<count>\d+)_(?P<org>[^_/]+)_(?P<model>[^/]+?)"
    + re.escape(BENCH_SUFFIX) + r"(?:\.txt)?$"
)


@dataclass(frozen=True)
class LegacyResultName:
    """What an old `{gpu}_x_{count}_{org}_{model}_vllm_benchmark.txt` name says."""

    gpu_short: str
    gpu_count: int
    model_name: str  # "org/model"


def _check_gpu(gpu_short: str, gpu_count: int) -> None:
    if not _GPU_SHORT.match(gpu_short or ""):
        raise BenchmarkError(
            f"GPU short name {gpu_short!r}: expected lower-case letters, digits and '-' "
            "(such as 'h100' or 'pro6000')"
        )
    if isinstance(gpu_count, bool) or not isinstance(gpu_count, int) or gpu_count < 1:
        raise BenchmarkError(f"GPU count {gpu_count!r}: expected a positive integer")


def sanitize_label(label: str) -> str:
    """A sweep label made safe for a file name: runs of other characters become '-'."""
    return _UNSAFE.sub("-", label).strip("-.")


def result_file_stem(gpu_short: str, gpu_count: int, sweep_label: str = "") -> str:
    """File stem in the new scheme: `h100x8_vllm_benchmark`, `h100x8_c64_vllm_benchmark`.

    The sweep label (such as "max_concurrency=64") is reduced to `[A-Za-z0-9.=-]` so it
    can never add a path separator or hide the `_vllm_benchmark` suffix.
    """
    _check_gpu(gpu_short, gpu_count)
    stem = f"{gpu_short}x{gpu_count}"
    label = sanitize_label(sweep_label or "")
    if label:
        stem += f"_{label}"
    return stem + BENCH_SUFFIX


def parse_legacy_filename(name: str | Path) -> LegacyResultName:
    """GPU, count and model from `{gpu}_x_{count}_{org}_{model}_vllm_benchmark.txt`.

    The org is the first `_`-separated part after the count; the rest, underscores and
    dots included, is the model (`h100_x_8_zai-org_GLM-4.6-FP8_...` -> `zai-org/GLM-4.6-FP8`).
    """
    base = Path(str(name)).name
    match = _LEGACY_NAME.match(base)
    if not match:
        raise BenchmarkError(
            f"{base}: not a legacy result file name; expected "
            "{gpu}_x_{count}_{org}_{model}_vllm_benchmark.txt "
            "(such as h100_x_8_zai-org_GLM-4.6-FP8_vllm_benchmark.txt)"
        )
    count = int(match["count"])
    if count < 1:
        raise BenchmarkError(f"{base}: GPU count {count} must be positive")
    return LegacyResultName(
        gpu_short=match["gpu"].lower(),
        gpu_count=count,
        model_name=f"{match['org']}/{match['model']}",
    )


def legacy_file_stem(gpu_short: str, gpu_count: int, model_name: str) -> str:
    """The old scheme's stem: ("h100", 8, "zai-org/GLM-4.6-FP8") ->
    `h100_x_8_zai-org_GLM-4.6-FP8_vllm_benchmark` (add ".txt" for the file)."""
    _check_gpu(gpu_short, gpu_count)
    org, slash, model = model_name.partition("/")
    if not slash or not org or not model or "_" in org or "/" in model:
        raise BenchmarkError(
            f"model name {model_name!r}: the legacy file scheme needs 'org/model' with no "
            "'_' in the org and one '/'"
        )
    return f"{gpu_short}_x_{gpu_count}_{org}_{model}{BENCH_SUFFIX}"
