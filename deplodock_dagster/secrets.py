"""Keep secret values out of logs, events, results and reports.

Code that reads a secret (HF token, API key, VM password) registers it here; `redact` then
replaces every registered value in any text, and `RedactingFilter` does the same for every
log record. Registration is process-wide because a secret must stay hidden wherever the
text it appears in ends up.
"""

from __future__ import annotations

import logging
import threading

REDACTED = "***"
_MIN_SECRET_LEN = 4  # shorter values would redact ordinary words

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> str | None:
    """Remember `value` as secret and return it unchanged (None and short values ignored)."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)
    return value


def redact(text: str) -> str:
    """Return `text` with every registered secret replaced by `***`."""
    if not text:
        return text
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_obj(obj):
    """Redact every string inside nested dicts, lists and tuples."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {key: redact_obj(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(value) for value in obj)
    return obj


class RedactingFilter(logging.Filter):
    """A logging filter that redacts registered secrets from each record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach a RedactingFilter to the handlers of `logger` (root by default), once."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
