"""When to try a failed message again: fixed delay tiers, chosen per attempt. No I/O here.

The n-th retry waits the n-th tier, later retries the last one. A failure
that only an operator can fix starts at the tier of at least
``operator_min_delay_s``; a Retry-After from the API is honoured by taking
the first tier at least that long.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import RetrySettings


@dataclass(frozen=True)
class RetryPolicy:
    delays_s: tuple[float, ...]
    max_attempts: int
    operator_min_delay_s: float

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> RetryPolicy:
        return cls(settings.delays_s, settings.max_attempts, settings.operator_min_delay_s)

    def delay_after(self, attempts: int, needs_operator: bool = False, retry_after_s: float | None = None) -> float | None:
        """The wait before the next attempt, ``attempts`` having failed; None when they are used up."""
        if attempts >= self.max_attempts:
            return None
        delay = self.delays_s[min(attempts - 1, len(self.delays_s) - 1)]
        floor = max(self.operator_min_delay_s if needs_operator else 0.0, retry_after_s or 0.0)
        if delay < floor:
            delay = next((d for d in self.delays_s if d >= floor), self.delays_s[-1])
        return delay
