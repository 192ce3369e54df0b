"""Find measured results in results folders: result stores and legacy text archives.

Two kinds of folder are read:

- a result store (see `bench/store.py`): `result.json` files anywhere below the folder,
  each a `TaskResult.to_dict()` with the metrics inside;
- a legacy archive: `{gpu}_x_{count}_{org}_{model}_vllm_benchmark.txt` files directly in
  the folder (not in subfolders: the old tool kept other runs, such as `single-query/`,
  in subfolders that are reports of their own).

A file that cannot be read is reported as a problem and skipped, so one bad file never
hides the rest of an archive; `strict=True` raises instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from deplodock_dagster.bench.parse import LEGACY_SUFFIX, parse_bench_table, parse_legacy_filename
from deplodock_dagster.bench.types import BenchmarkMetrics, TaskResult
from deplodock_dagster.errors import BenchmarkError, ConfigError

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
HISTORY_DIR = "history"  # see bench/store.py


@dataclass(frozen=True)
class MeasuredResult:
    """One measured benchmark, wherever it was read from."""

    model_name: str
    gpu_short: str
    gpu_name: str  # full name when known (store results), else the short name
    gpu_count: int
    metrics: BenchmarkMetrics
    source: Path
    variant: str = ""
    run_id: str | None = None

    @property
    def machine(self) -> str:
        """Machine label as the old reports wrote it: `8xH100`, `8x6000`, `1x4090`."""
        return f"{self.gpu_count}x{gpu_display_name(self.gpu_short)}"


@dataclass
class Collected:
    """What was found: results, tasks without numbers (failed or skipped), skipped files."""

    results: list[MeasuredResult] = field(default_factory=list)
    unmeasured_tasks: list[str] = field(default_factory=list)  # "task_id: error"
    problems: list[str] = field(default_factory=list)
    files_read: int = 0


def gpu_display_name(gpu_short: str) -> str:
    """Short GPU name as a machine label shows it: `h100` -> `H100`, `pro6000` -> `6000`."""
    label = gpu_short.upper().replace("RTX", "").replace("PRO", "")
    return label or gpu_short.upper()


def _short_name(gpu_name: str) -> str:
    """Short name of a stored GPU name; names unknown to hardware.py are kept, simplified."""
    from deplodock_dagster.hardware import gpu_short_name

    try:
        return gpu_short_name(gpu_name)
    except ConfigError:
        simplified = "".join(ch for ch in gpu_name.casefold() if ch.isalnum())
        logger.warning("unknown GPU %r in a stored result; labelled %r", gpu_name, simplified)
        return simplified or "unknown"


def read_store_result(path: Path) -> tuple[MeasuredResult | None, TaskResult]:
    """A store's `result.json`: the measured result (None if it has no metrics) and the task."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        result = TaskResult.from_dict(data)
    except (OSError, ValueError, TypeError) as error:
        raise BenchmarkError(
            f"{path}: not a stored task result ({error}); expected TaskResult JSON"
        ) from error
    if result.metrics is None:
        return None, result
    if not result.model_name or not result.gpu_name or not result.gpu_count:
        raise BenchmarkError(f"{path}: model_name, gpu_name and gpu_count must be set")
    measured = MeasuredResult(
        model_name=result.model_name,
        gpu_short=_short_name(result.gpu_name),
        gpu_name=result.gpu_name,
        gpu_count=int(result.gpu_count),
        metrics=result.metrics,
        source=path,
        variant=result.variant,
        run_id=result.run_id,
    )
    return measured, result


def read_legacy_result(path: Path) -> MeasuredResult:
    """One `{gpu}_x_{count}_{org}_{model}_vllm_benchmark.txt` file of the old tool."""
    name = parse_legacy_filename(path.name)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise BenchmarkError(f"{path}: cannot read: {error}") from error
    metrics = parse_bench_table(text, source=str(path))
    return MeasuredResult(
        model_name=name.model_name,
        gpu_short=name.gpu_short,
        gpu_name=name.gpu_short,
        gpu_count=name.gpu_count,
        metrics=metrics,
        source=path,
    )


def collect_results(results_dirs: list[str | Path], *, strict: bool = False) -> Collected:
    """Every measured result in the folders (see the module docstring), in a stable order.

    Raises ConfigError when a folder does not exist. With `strict`, an unreadable file
    raises BenchmarkError; otherwise it is listed in `problems` and skipped.
    """
    collected = Collected()
    seen: set[Path] = set()

    def skip(error: BenchmarkError) -> None:
        if strict:
            raise error
        logger.warning("skipped: %s", error)
        collected.problems.append(str(error))

    for folder in (Path(d) for d in results_dirs):
        if not folder.is_dir():
            raise ConfigError(
                f"results folder {folder} does not exist; pass --results with a folder of "
                "stored results or of *_vllm_benchmark.txt files"
            )
        # Results a newer run replaced sit in `history/` folders: the report shows the latest.
        store_files = sorted(
            path for path in folder.rglob(RESULT_FILE)
            if HISTORY_DIR not in path.relative_to(folder).parts
        )
        # A task folder of a store keeps its printed table beside result.json: read once.
        legacy_files = [] if (folder / RESULT_FILE).is_file() else sorted(
            folder.glob(f"*{LEGACY_SUFFIX}")
        )
        for path in store_files + legacy_files:
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            collected.files_read += 1
            try:
                if path.name == RESULT_FILE:
                    measured, task = read_store_result(path)
                    if measured is None:
                        collected.unmeasured_tasks.append(
                            f"{task.task_id}: {task.outcome}"
                            + (f": {task.error}" if task.error else "")
                        )
                        continue
                else:
                    measured = read_legacy_result(path)
            except BenchmarkError as error:
                skip(error)
                continue
            collected.results.append(measured)
    logger.info(
        "read %d result files: %d measured, %d without numbers, %d skipped",
        collected.files_read,
        len(collected.results),
        len(collected.unmeasured_tasks),
        len(collected.problems),
    )
    return collected
