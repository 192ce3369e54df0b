"""ResultStore: layout, atomic writes, redaction, reload."""

import json

from deplodock_dagster.bench.store import ResultStore, task_slug
from deplodock_dagster.bench.types import (
    OUTCOME_FAILED,
    OUTCOME_SUCCEEDED,
    BenchmarkMetrics,
    TaskResult,
)
from deplodock_dagster.secrets import register_secret


def _result(task_id="tiny-cpu/cpu", outcome=OUTCOME_SUCCEEDED, **extra):
    recipe, variant = task_id.split("/", 1)
    metrics = BenchmarkMetrics(
        successful_requests=32, failed_requests=0, duration_s=1.5, total_input_tokens=2048,
        total_output_tokens=1024, request_throughput_rps=21.3, output_throughput_tok_s=682.7,
        total_token_throughput_tok_s=2048.0,
    )
    return TaskResult(
        task_id=task_id, recipe_name=recipe, variant=variant, model_name="deplodock/tiny-llama",
        gpu_name="CPU", gpu_count=1, outcome=outcome, metrics=metrics, **extra,
    )


def test_save_load_roundtrip_and_layout(tmp_path):
    store = ResultStore(tmp_path)
    assert not store.has("tiny-cpu/cpu")
    folder = store.save(_result(), {"cpux1_vllm_benchmark.json": '{"completed": 32}'})
    assert folder == tmp_path / "tiny-cpu" / "cpu"
    assert (folder / "cpux1_vllm_benchmark.json").read_text() == '{"completed": 32}'
    loaded = store.load("tiny-cpu/cpu")
    assert loaded.metrics.total_token_throughput_tok_s == 2048.0
    assert loaded.succeeded and store.has_success("tiny-cpu/cpu")
    assert [r.task_id for r in store.all_results()] == ["tiny-cpu/cpu"]
    assert [r.task_id for r in store.all_results("tiny-cpu")] == ["tiny-cpu/cpu"]
    assert not list(folder.glob(".*")), "no temporary files left behind"


def test_sweep_points_get_their_own_folders(tmp_path):
    store = ResultStore(tmp_path)
    store.save(_result("glm/8xH200/benchmark.max_concurrency=8"))
    store.save(_result("glm/8xH200/benchmark.max_concurrency=64", outcome=OUTCOME_FAILED))
    assert len(store.all_results("glm")) == 2
    assert not store.has_success("glm/8xH200/benchmark.max_concurrency=64")
    assert task_slug("glm/8xH200/a=1,b=2") == "8xH200__a=1,b=2"


def test_secrets_are_redacted_in_every_file(tmp_path):
    token = register_secret("hf_test_secret_value_123")
    store = ResultStore(tmp_path)
    folder = store.save(
        _result(deploy_spec=f"HF_TOKEN={token}", error=f"failed with {token}"),
        {"engine.log": f"token is {token}\n"},
    )
    for path in folder.iterdir():
        assert token not in path.read_text(), path
    assert json.loads((folder / "result.json").read_text())["deploy_spec"] == "HF_TOKEN=***"


def test_bad_file_names_are_refused(tmp_path):
    store = ResultStore(tmp_path)
    for name in ("../escape", "result.json", ""):
        try:
            store.save(_result(), {name: "x"})
        except ValueError:
            continue
        raise AssertionError(f"{name!r} was accepted")


def test_saving_again_keeps_the_older_result_in_history(tmp_path):
    store = ResultStore(tmp_path)
    store.save(_result(finished_at="2026-12-01T02:00:00+00:00"), {"table.txt": "first"})
    store.save(_result(finished_at="2026-12-02T02:00:00+00:00", outcome=OUTCOME_FAILED),
               {"table.txt": "second"})
    folder = store.task_dir("tiny-cpu/cpu")
    assert (folder / "table.txt").read_text() == "second"
    assert store.load("tiny-cpu/cpu").outcome == OUTCOME_FAILED
    history = store.history("tiny-cpu/cpu")
    assert [r.finished_at for r in history] == ["2026-12-01T02:00:00+00:00"]
    (old_dir,) = (folder / "history").iterdir()
    assert (old_dir / "table.txt").read_text() == "first"
    # History is not mistaken for current results.
    assert len(store.all_results()) == 1
