"""Helpers for the recipe tests: a small valid recipe and a writer for variants of it."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

BASE = {
    "model": {"name": "org/model-7B"},
    "backend": {
        "vllm": {
            "image": "vllm/vllm-openai:v0.11.0",
            "tensor_parallel_size": 2,
            "max_model_len": 4096,
            "extra_args": "--kv-cache-dtype fp8",
        }
    },
    "benchmark": {
        "max_concurrency": 8,
        "num_prompts": 16,
        "random_input_len": 100,
        "random_output_len": 50,
    },
    "variants": {"2xH100": {"gpu": "NVIDIA H100 80GB", "gpu_count": 2}},
}


def base() -> dict:
    """A fresh deep copy of the valid base recipe."""
    return copy.deepcopy(BASE)


def write_recipe(root: Path, content: dict | str, name: str = "demo") -> Path:
    """Write recipes/<name>/recipe.yaml under root; return the recipe.yaml path."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "recipe.yaml"
    text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
    file.write_text(text, encoding="utf-8")
    return file
