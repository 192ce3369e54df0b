"""Typed benchmark results. Units are in the field names."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

OUTCOME_SUCCEEDED = "succeeded"
OUTCOME_FAILED = "failed"
OUTCOME_SKIPPED = "skipped"  # dry run, or already stored and not forced


@dataclass(frozen=True)
class BenchmarkMetrics:
    """The numbers `vllm bench serve` reports, from its JSON or its printed table."""

    successful_requests: int
    failed_requests: int
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    request_throughput_rps: float
    output_throughput_tok_s: float
    total_token_throughput_tok_s: float
    max_concurrency: int | None = None
    peak_output_throughput_tok_s: float | None = None
    mean_ttft_ms: float | None = None
    median_ttft_ms: float | None = None
    p99_ttft_ms: float | None = None
    mean_tpot_ms: float | None = None
    median_tpot_ms: float | None = None
    p99_tpot_ms: float | None = None
    mean_itl_ms: float | None = None
    median_itl_ms: float | None = None
    p99_itl_ms: float | None = None
    mean_e2el_ms: float | None = None
    median_e2el_ms: float | None = None
    p99_e2el_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BenchmarkMetrics:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class TaskResult:
    """Everything stored for one task: what ran, where, how long, and what came out.

    `deploy_spec` is the compose file or engine command line with secrets redacted.
    `timings_s` maps phase ("provision", "deploy", "benchmark", "teardown") to seconds.
    """

    task_id: str
    recipe_name: str
    variant: str
    model_name: str
    gpu_name: str
    gpu_count: int
    outcome: str  # OUTCOME_*
    run_id: str | None = None
    error: str | None = None
    metrics: BenchmarkMetrics | None = None
    recipe: dict = field(default_factory=dict)  # ResolvedRecipe.to_dict()
    deploy_spec: str = ""
    runtime: str = ""
    host_facts: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    engine_log_tail: str = ""
    started_at: str = ""  # ISO 8601 UTC
    finished_at: str = ""

    @property
    def succeeded(self) -> bool:
        return self.outcome == OUTCOME_SUCCEEDED

    def to_dict(self) -> dict:
        data = asdict(self)
        data["metrics"] = self.metrics.to_dict() if self.metrics else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TaskResult:
        data = dict(data)
        metrics = data.pop("metrics", None)
        known = {f.name for f in fields(cls)}
        result = cls(**{key: value for key, value in data.items() if key in known})
        result.metrics = BenchmarkMetrics.from_dict(metrics) if metrics else None
        return result
