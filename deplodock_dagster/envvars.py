"""Read settings from environment variables, with errors that name the variable."""

from __future__ import annotations

from collections.abc import Mapping

from deplodock_dagster.errors import ConfigError

TRUE_WORDS = ("1", "true", "yes", "on")


def env_text(env: Mapping[str, str], name: str) -> str | None:
    """The stripped value of `name`, or None when unset or blank."""
    value = env.get(name, "").strip()
    return value or None


def env_positive(env: Mapping[str, str], name: str, kind=float, default=None):
    """`name` as a positive number of type `kind`; `default` when unset.

    ConfigError names the variable when the value is not a number or not positive.
    """
    raw = env_text(env, name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"environment variable {name}={raw!r} must be positive")
    return value


def env_flag(env: Mapping[str, str], name: str) -> bool:
    """True when `name` is 1, true, yes or on (any case)."""
    return (env_text(env, name) or "").lower() in TRUE_WORDS


def env_list(env: Mapping[str, str], name: str) -> tuple[str, ...] | None:
    """`name` split on commas, blanks dropped; None when unset."""
    raw = env_text(env, name)
    return tuple(part.strip() for part in raw.split(",") if part.strip()) if raw else None
