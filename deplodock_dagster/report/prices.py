"""GPU prices: $ per GPU-hour by GPU name, read from a `pricing.yaml`.

The file maps short GPU names (as in `hardware.py`: `h100`, `pro6000`) or full names to the
price of one GPU for one hour:

    pricing:
      h100: 2.69
      pro6000: 2.09

A plain mapping without the `pricing:` key is accepted too. A machine's price is the
per-GPU price times its GPU count.
"""

from __future__ import annotations

from pathlib import Path

from deplodock_dagster.errors import ConfigError

PRICES_FILE_NAME = "pricing.yaml"


def _normalise(name: str) -> str:
    return " ".join(str(name).split()).casefold()


def load_prices(path: str | Path) -> dict[str, float]:
    """$ per GPU-hour by lower-cased GPU name from a pricing YAML file.

    Raises ConfigError naming the file (and the entry) when it is missing, not YAML, or
    holds something other than non-negative numbers.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            f"{path}: cannot read prices file ({error.strerror or error}); pass --prices "
            f"with a YAML file of $ per GPU-hour such as 'pricing: {{h100: 2.69}}'"
        ) from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    return prices_from_mapping(data, source=str(path))


def prices_from_mapping(data: object, source: str = "prices") -> dict[str, float]:
    """Validate a prices mapping (with or without a top-level `pricing` key)."""
    if isinstance(data, dict) and "pricing" in data:
        data = data["pricing"]
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"{source}: expected a mapping of GPU name to $ per GPU-hour under 'pricing:' "
            "(such as 'pricing: {h100: 2.69}')"
        )
    prices = {}
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(
                f"{source}: pricing.{name}: expected a non-negative number of $ per GPU-hour, "
                f"got {value!r}"
            )
        prices[_normalise(name)] = float(value)
    return prices


def gpu_hour_price(prices: dict[str, float], gpu_short: str, gpu_name: str = "") -> float | None:
    """The $ per GPU-hour for a GPU by its full name, else its short name; None if absent.

    The full name wins so that GPUs sharing a short name (A100 40GB and 80GB) can be priced
    apart.
    """
    for key in (gpu_name, gpu_short):
        if key and _normalise(key) in prices:
            return prices[_normalise(key)]
    return None


def find_prices_file(results_dirs: list[Path]) -> Path | None:
    """The first `pricing.yaml` in a results folder, else in a results folder's parent.

    The parent counts because archives keep related runs in subfolders (such as
    `single-query/`) under the folder that holds the prices.
    """
    folders = [Path(folder) for folder in results_dirs]
    for candidate_dir in folders + [folder.resolve().parent for folder in folders]:
        candidate = candidate_dir / PRICES_FILE_NAME
        if candidate.is_file():
            return candidate
    return None
