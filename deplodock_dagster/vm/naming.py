"""VM names and labels that carry the run id and group label, within cloud naming rules.

GCE names are 1-63 characters of `[a-z]([-a-z0-9]*[a-z0-9])?`; label keys and values are up
to 63 lowercase letters, digits, `_` and `-`. CloudRift accepts the same names, so one
scheme serves every provider and a listing can find a run's VMs by name prefix alone.
"""

from __future__ import annotations

import re
import secrets as _random

from deplodock_dagster.vm.types import GROUP_LABEL, MANAGED_LABEL, RUN_LABEL

NAME_PREFIX = "deplodock"
MAX_NAME_LEN = 63
MAX_LABEL_LEN = 63
RUN_ID_NAME_LEN = 8  # run id characters kept in a VM name (the full id is in the labels)
SUFFIX_LEN = 4

_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _slug(text: str, allowed: str) -> str:
    text = re.sub(f"[^{allowed}]+", "-", str(text).lower())
    return re.sub("-{2,}", "-", text).strip("-_")


def label_value(text: str) -> str:
    """`text` as a valid label value (lowercase, [a-z0-9_-], at most 63 characters)."""
    return _slug(text, "a-z0-9_-")[:MAX_LABEL_LEN].strip("-_")


def run_name_part(run_id: str) -> str:
    """The run id fragment a VM name carries."""
    return re.sub("[^a-z0-9]", "", str(run_id).lower())[:RUN_ID_NAME_LEN] or "run"


def run_name_prefix(run_id: str) -> str:
    """Every VM name of this run starts with this prefix."""
    return f"{NAME_PREFIX}-{run_name_part(run_id)}-"


def vm_name(run_id: str, group_label: str, suffix: str | None = None) -> str:
    """A fresh VM name: `deplodock-<run8>-<group>-<4 random>` (<= 63, GCE-valid).

    The random suffix keeps a re-provisioned group from colliding with a VM of the same
    name that is still being deleted.
    """
    suffix = suffix or _random.token_hex(SUFFIX_LEN // 2)
    prefix = run_name_prefix(run_id)
    room = MAX_NAME_LEN - len(prefix) - len(suffix) - 1
    group = _slug(group_label, "a-z0-9")[:room].strip("-") or "group"
    name = f"{prefix}{group}-{suffix}"
    if not is_valid_name(name):  # pragma: no cover - the construction above guarantees it
        raise ValueError(f"bad VM name {name!r}")
    return name


def is_valid_name(name: str) -> bool:
    """True if `name` is a valid GCE resource name."""
    return len(name) <= MAX_NAME_LEN and bool(_NAME_RE.match(name))


def vm_labels(run_id: str, group_label: str) -> dict[str, str]:
    """The labels every VM of this run and group carries."""
    return {
        RUN_LABEL: label_value(run_id) or "run",
        GROUP_LABEL: label_value(group_label) or "group",
        MANAGED_LABEL: "true",
    }
