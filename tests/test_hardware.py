"""The GPU table: names, short names, instance types per provider."""

from __future__ import annotations

import pytest

from deplodock_dagster.errors import ConfigError
from deplodock_dagster.hardware import (
    GPUS,
    gcp_provisioning_model,
    gcp_zones,
    gpu_short_name,
    instance_types,
    known_gpu_names,
    resolve_gpu_name,
    resolve_instance_type,
)

REQUIRED = {
    "NVIDIA GeForce RTX 4090": "rtx4090",
    "NVIDIA GeForce RTX 5090": "rtx5090",
    "NVIDIA RTX PRO 6000 Blackwell Workstation Edition": "pro6000",
    "NVIDIA RTX PRO 6000 Blackwell Server Edition": "pro6000",
    "NVIDIA L40S": "l40s",
    "NVIDIA A100 40GB": "a100",
    "NVIDIA A100 80GB": "a100",
    "NVIDIA H100 80GB": "h100",
    "NVIDIA H200 141GB": "h200",
    "NVIDIA B200": "b200",
    "AMD Instinct MI350X": "mi350x",
    "CPU": "cpu",
}


def test_table_has_every_required_gpu_with_its_short_name():
    assert {gpu.name: gpu.short_name for gpu in GPUS} == REQUIRED
    assert known_gpu_names() == [gpu.name for gpu in GPUS]
    for name, short in REQUIRED.items():
        assert gpu_short_name(name) == short
        assert instance_types(name), name


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("NVIDIA H200 141GB", "NVIDIA H200 141GB"),
        ("nvidia h200 141gb", "NVIDIA H200 141GB"),
        ("h200", "NVIDIA H200 141GB"),
        ("H100", "NVIDIA H100 80GB"),
        (" B200 ", "NVIDIA B200"),
        ("MI350X", "AMD Instinct MI350X"),
        ("cpu", "CPU"),
        ("rtx4090", "NVIDIA GeForce RTX 4090"),
    ],
)
def test_resolve_gpu_name_accepts_full_and_short_names(given, expected):
    assert resolve_gpu_name(given) == expected


def test_unknown_gpu_lists_the_known_names():
    with pytest.raises(ConfigError) as caught:
        resolve_gpu_name("H900")
    message = str(caught.value)
    assert "unknown GPU 'H900'" in message
    for name in REQUIRED:
        assert name in message


def test_shared_short_name_is_ambiguous():
    with pytest.raises(ConfigError, match="ambiguous.*NVIDIA A100 40GB.*NVIDIA A100 80GB"):
        resolve_gpu_name("a100")


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [
        ("NVIDIA GeForce RTX 4090", [("cloudrift", "rtx49-10c-kn"), ("cloudrift", "rtx49-7c-kn")]),
        ("NVIDIA GeForce RTX 5090", [("cloudrift", "rtx59-16c-nr")]),
        ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
         [("cloudrift", "rtxpro6000-12-100-1500-nr")]),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", [("gcp", "g4-standard")]),
        ("NVIDIA L40S", [("cloudrift", "l40s-24c-kn")]),
        ("NVIDIA H200 141GB", [("cloudrift", "h200-8-generic"), ("gcp", "a3-ultragpu")]),
        ("NVIDIA H100 80GB", [("gcp", "a3-highgpu")]),
        ("NVIDIA B200", [("gcp", "a4-highgpu")]),
        ("NVIDIA A100 40GB", [("gcp", "a2-highgpu")]),
        ("NVIDIA A100 80GB", [("gcp", "a2-ultragpu")]),
        ("AMD Instinct MI350X", [("cloudrift", "mi350x-15-250-1000-gv")]),
        ("CPU", [("fixed", "cpu")]),
    ],
)
def test_instance_types_in_preference_order(gpu, expected):
    assert instance_types(gpu) == expected


@pytest.mark.parametrize(
    ("provider", "base", "count", "expected"),
    [
        ("cloudrift", "h200-8-generic", 8, "h200-8-generic.8"),
        ("cloudrift", "rtx49-7c-kn", 1, "rtx49-7c-kn.1"),
        ("gcp", "a3-highgpu", 8, "a3-highgpu-8g"),
        ("gcp", "a3-highgpu", 1, "a3-highgpu-1g"),
        ("gcp", "a3-highgpu", 3, "a3-highgpu-4g"),  # rounded up
        ("gcp", "a4-highgpu", 2, "a4-highgpu-8g"),  # only sold in 8s
        ("gcp", "a3-ultragpu", 4, "a3-ultragpu-8g"),
        ("gcp", "a2-ultragpu", 2, "a2-ultragpu-2g"),
        ("gcp", "g4-standard", 1, "g4-standard-48"),
        ("gcp", "g4-standard", 8, "g4-standard-384"),
        ("gcp", "g4-standard", 3, "g4-standard-192"),
        ("fixed", "cpu", 1, "cpu"),
    ],
)
def test_resolve_instance_type(provider, base, count, expected):
    assert resolve_instance_type(provider, base, count) == expected


@pytest.mark.parametrize(
    ("provider", "base", "count", "fragment"),
    [
        ("gcp", "a3-highgpu", 16, "at most 8 GPUs"),
        ("gcp", "n1-standard", 1, "unknown GCP machine family"),
        ("aws", "p5", 8, "unknown provider 'aws'"),
        ("cloudrift", "h200-8-generic", 0, "positive integer"),
    ],
)
def test_resolve_instance_type_errors(provider, base, count, fragment):
    with pytest.raises(ConfigError, match=fragment):
        resolve_instance_type(provider, base, count)


def test_gcp_zones_and_provisioning_models():
    assert gcp_zones("h100") and all(zone.count("-") == 2 for zone in gcp_zones("h100"))
    assert gcp_zones("rtx4090") == []
    assert gcp_provisioning_model("NVIDIA H100 80GB") == "FLEX_START"
    assert gcp_provisioning_model("NVIDIA RTX PRO 6000 Blackwell Server Edition") == "SPOT"
    for gpu in GPUS:
        on_gcp = any(provider == "gcp" for provider, _ in gpu.instance_types)
        assert bool(gpu.gcp_zones) == on_gcp, gpu.name
