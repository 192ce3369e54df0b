"""A record of one cloud API call, for dry runs that show what would be sent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from deplodock_dagster.secrets import redact, redact_obj

REDACTED_HEADERS = ("x-api-key", "authorization")


@dataclass(frozen=True)
class ApiCall:
    """An HTTP request a provider would make: method, URL, headers and JSON body."""

    method: str
    url: str
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""  # what the call is for, e.g. "then poll until ready"

    def format(self) -> str:
        """Human-readable form with keys and registered secrets redacted."""
        lines = [f"{self.method} {redact(self.url)}"]
        for name, value in self.headers.items():
            shown = "***" if name.lower() in REDACTED_HEADERS else redact(value)
            lines.append(f"  {name}: {shown}")
        if self.body is not None:
            text = json.dumps(redact_obj(self.body), indent=2, sort_keys=True)
            lines.extend("  " + line for line in text.splitlines())
        if self.note:
            lines.append(f"  # {self.note}")
        return "\n".join(lines)
