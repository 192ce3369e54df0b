"""Bounded retries with exponential backoff for cloud calls that are safe to repeat.

Only TransientCloudError is retried; capacity and terminal errors go straight up. A caller
that is not idempotent (renting, inserting without a request id) passes `before_retry`, a
check that runs before each new attempt and may return a result instead of retrying.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from deplodock_dagster.errors import TransientCloudError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to repeat a transient failure."""

    max_attempts: int = 4  # first try included
    backoff_base_s: float = 2.0
    backoff_max_s: float = 30.0

    def delay_s(self, attempt: int) -> float:
        """Pause after failed attempt number `attempt` (1-based)."""
        return min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1)))


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    what: str,
    before_retry: Callable[[], T | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn`, repeating it on TransientCloudError up to `policy.max_attempts` times.

    `before_retry`, when given, runs before each repeat; a non-None result ends the loop
    with that result (e.g. "the rent did go through, here is the instance").
    """
    attempt = 1
    while True:
        try:
            return fn()
        except TransientCloudError as error:
            if attempt >= policy.max_attempts:
                raise TransientCloudError(
                    error.provider,
                    f"{what} still failing after {attempt} attempts: {_reason(error)}",
                ) from error
            delay = policy.delay_s(attempt)
            logger.info(
                "%s failed (attempt %d of %d), retrying in %.1fs: %s",
                what, attempt, policy.max_attempts, delay, _reason(error),
            )
            sleep(delay)
            attempt += 1
            if before_retry is not None:
                found = before_retry()
                if found is not None:
                    return found


def _reason(error: TransientCloudError) -> str:
    text = str(error)
    prefix = f"{error.provider}: "
    return text[len(prefix):] if text.startswith(prefix) else text
