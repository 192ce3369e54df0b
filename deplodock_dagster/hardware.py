"""GPU names, short names and the machine types that carry them on each provider.

A recipe names its GPU in full ("NVIDIA H200 141GB") or by its short name ("h200"); the rest
of the system only ever sees the full name, which `resolve_gpu_name` returns. The short name
goes into result file names and group labels. `instance_types` lists, in preference order,
the (provider, base type) pairs that offer the GPU; `resolve_instance_type` turns a base and
a GPU count into the exact type to rent:

- CloudRift: `<base>.<N>`, e.g. `h200-8-generic.8`
- GCP: `<base>-<N>g`, e.g. `a3-highgpu-8g`, with N rounded up to the smallest count the
  family sells (B200 and H200 come only in 8s); the G4 family is `g4-standard-<48*N>`
- fixed hosts: the base itself (a host you already own has no type to rent)

GCP zones and the default provisioning model per GPU are data here too, so adding a GPU or
a provider touches this table and the provider module, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from deplodock_dagster.errors import ConfigError

PROVIDERS = ("cloudrift", "gcp", "fixed")

FLEX_START = "FLEX_START"
SPOT = "SPOT"
STANDARD = "STANDARD"


@dataclass(frozen=True)
class GpuInfo:
    """One accelerator model and where it can be rented."""

    name: str  # full name, as reported by the vendor tools
    short_name: str  # [a-z0-9], used in file names and labels
    vram_gb: int | None
    instance_types: tuple[tuple[str, str], ...]  # (provider, base type), preferred first
    gcp_zones: tuple[str, ...] = ()  # zones that offer the GCP type, preferred first
    gcp_provisioning_model: str = FLEX_START


GPUS: tuple[GpuInfo, ...] = (
    GpuInfo(
        name="NVIDIA GeForce RTX 4090",
        short_name="rtx4090",
        vram_gb=24,
        instance_types=(("cloudrift", "rtx49-10c-kn"), ("cloudrift", "rtx49-7c-kn")),
    ),
    GpuInfo(
        name="NVIDIA GeForce RTX 5090",
        short_name="rtx5090",
        vram_gb=32,
        instance_types=(("cloudrift", "rtx59-16c-nr"),),
    ),
    GpuInfo(
        name="NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
        short_name="pro6000",
        vram_gb=96,
        instance_types=(("cloudrift", "rtxpro6000-12-100-1500-nr"),),
    ),
    GpuInfo(
        name="NVIDIA RTX PRO 6000 Blackwell Server Edition",
        short_name="pro6000",
        vram_gb=96,
        instance_types=(("gcp", "g4-standard"),),
        gcp_zones=("us-central1-b", "us-east4-c", "europe-west4-b"),
        gcp_provisioning_model=SPOT,
    ),
    GpuInfo(
        name="NVIDIA L40S",
        short_name="l40s",
        vram_gb=48,
        instance_types=(("cloudrift", "l40s-24c-kn"),),
    ),
    GpuInfo(
        name="NVIDIA A100 40GB",
        short_name="a100",
        vram_gb=40,
        instance_types=(("gcp", "a2-highgpu"),),
        gcp_zones=("us-central1-a", "us-central1-b", "us-central1-c", "europe-west4-a"),
    ),
    GpuInfo(
        name="NVIDIA A100 80GB",
        short_name="a100",
        vram_gb=80,
        instance_types=(("gcp", "a2-ultragpu"),),
        gcp_zones=("us-central1-a", "us-central1-c", "us-east4-c", "europe-west4-a"),
    ),
    GpuInfo(
        name="NVIDIA H100 80GB",
        short_name="h100",
        vram_gb=80,
        instance_types=(("gcp", "a3-highgpu"),),
        gcp_zones=("us-central1-a", "us-east5-a", "us-west1-a", "europe-west4-b"),
    ),
    GpuInfo(
        name="NVIDIA H200 141GB",
        short_name="h200",
        vram_gb=141,
        instance_types=(("cloudrift", "h200-8-generic"), ("gcp", "a3-ultragpu")),
        gcp_zones=("us-central1-b", "us-east4-b", "europe-west1-b"),
    ),
    GpuInfo(
        name="NVIDIA B200",
        short_name="b200",
        vram_gb=180,
        instance_types=(("gcp", "a4-highgpu"),),
        gcp_zones=("us-central1-b", "us-east4-b", "europe-west4-b"),
    ),
    GpuInfo(
        name="AMD Instinct MI350X",
        short_name="mi350x",
        vram_gb=288,
        instance_types=(("cloudrift", "mi350x-15-250-1000-gv"),),
    ),
    GpuInfo(
        # No accelerator: the tiny CPU recipe runs on a fixed host (this machine in tests).
        name="CPU",
        short_name="cpu",
        vram_gb=None,
        instance_types=(("fixed", "cpu"),),
    ),
)

# GPU counts each GCP family sells; a request is rounded up to the smallest that fits.
GCP_GPU_COUNTS: dict[str, tuple[int, ...]] = {
    "a2-highgpu": (1, 2, 4, 8),
    "a2-ultragpu": (1, 2, 4, 8),
    "a3-highgpu": (1, 2, 4, 8),
    "a3-ultragpu": (8,),
    "a4-highgpu": (8,),
    "g4-standard": (1, 2, 4, 8),
}
G4_VCPUS_PER_GPU = 48

_BY_NAME = {gpu.name: gpu for gpu in GPUS}


def known_gpu_names() -> list[str]:
    """Every full GPU name, in table order."""
    return [gpu.name for gpu in GPUS]


def _known_names_text() -> str:
    return ", ".join(f"{gpu.name} ({gpu.short_name})" for gpu in GPUS)


def resolve_gpu_name(name: str) -> str:
    """The full GPU name for a full or short name, matched case-insensitively.

    A short name shared by two GPUs (`a100`, `pro6000`) is ambiguous and refused with the
    full names to choose from. Raises ConfigError listing the known names.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"GPU name must be a non-empty string; known: {_known_names_text()}")
    wanted = name.strip().casefold()
    for gpu in GPUS:
        if gpu.name.casefold() == wanted:
            return gpu.name
    matches = [gpu.name for gpu in GPUS if gpu.short_name == wanted]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(
            f"GPU name {name!r} is ambiguous: write one of {', '.join(matches)} in full"
        )
    raise ConfigError(f"unknown GPU {name!r}; known: {_known_names_text()}")


def gpu_info(name: str) -> GpuInfo:
    """The table row for a full or short GPU name (see resolve_gpu_name)."""
    return _BY_NAME[resolve_gpu_name(name)]


def gpu_short_name(full_name: str) -> str:
    """The short name for a GPU (`NVIDIA H200 141GB` -> `h200`); unknown names raise."""
    return gpu_info(full_name).short_name


def instance_types(gpu_name: str) -> list[tuple[str, str]]:
    """(provider, base type) pairs offering this GPU, in preference order."""
    return list(gpu_info(gpu_name).instance_types)


def gcp_zones(gpu_name: str) -> list[str]:
    """GCP zones that offer this GPU's machine type, preferred first ([] if not on GCP)."""
    return list(gpu_info(gpu_name).gcp_zones)


def gcp_provisioning_model(gpu_name: str) -> str:
    """Default GCP provisioning model: FLEX_START, or SPOT for the G4 family."""
    return gpu_info(gpu_name).gcp_provisioning_model


def gcp_gpu_count(base: str, gpu_count: int) -> int:
    """GPUs the GCP machine actually has: the smallest count sold that is >= gpu_count."""
    counts = GCP_GPU_COUNTS.get(base)
    if counts is None:
        known = ", ".join(GCP_GPU_COUNTS)
        raise ConfigError(f"unknown GCP machine family {base!r}; known: {known}")
    for count in counts:
        if count >= gpu_count:
            return count
    raise ConfigError(
        f"GCP {base} offers at most {counts[-1]} GPUs per machine, {gpu_count} were asked for"
    )


def resolve_instance_type(provider: str, base: str, gpu_count: int) -> str:
    """The exact type to rent for `gpu_count` GPUs of a base type on a provider."""
    if isinstance(gpu_count, bool) or not isinstance(gpu_count, int) or gpu_count < 1:
        raise ConfigError(f"gpu_count must be a positive integer, got {gpu_count!r}")
    if provider == "cloudrift":
        return f"{base}.{gpu_count}"
    if provider == "gcp":
        count = gcp_gpu_count(base, gpu_count)
        if base == "g4-standard":
            return f"g4-standard-{G4_VCPUS_PER_GPU * count}"
        return f"{base}-{count}g"
    if provider == "fixed":
        return base
    raise ConfigError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
