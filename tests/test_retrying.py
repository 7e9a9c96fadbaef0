"""The retry schedule. No I/O."""

from __future__ import annotations

import pytest

from dispatcher.retrying import RetryPolicy
from shared.settings import RetrySettings, SettingsError, load

DEFAULT = RetryPolicy.from_settings(RetrySettings())


def test_the_default_schedule_walks_the_tiers_and_spans_about_an_hour() -> None:
    delays = [DEFAULT.delay_after(n) for n in range(1, 9)]
    assert delays == [1, 5, 30, 120, 600, 1200, 1800, None]
    total = sum(d for d in delays if d)
    assert 50 * 60 <= total <= 70 * 60


def test_retries_past_the_last_tier_stay_on_it() -> None:
    policy = RetryPolicy((1.0, 2.0), max_attempts=5, operator_min_delay_s=30)
    assert [policy.delay_after(n) for n in range(1, 6)] == [1, 2, 2, 2, None]


def test_failures_an_operator_must_fix_start_on_the_slow_tiers() -> None:
    assert [DEFAULT.delay_after(n, needs_operator=True) for n in (1, 2, 3, 4)] == [30, 30, 30, 120]


@pytest.mark.parametrize(("retry_after", "expected"), [(3, 5), (5, 5), (0.5, 1), (7200, 1800)])
def test_retry_after_takes_the_first_tier_at_least_that_long(retry_after: float, expected: float) -> None:
    assert DEFAULT.delay_after(1, retry_after_s=retry_after) == expected


def test_delays_setting_is_parsed_sorted_and_checked() -> None:
    assert load(RetrySettings, {"OPENFERO_RETRY_DELAYS_SECONDS": "5, 1,1"}).delays_s == (1.0, 5.0)
    for wrong in ("1,soon", "0", ""):
        with pytest.raises(SettingsError, match="OPENFERO_RETRY_DELAYS_SECONDS"):
            load(RetrySettings, {"OPENFERO_RETRY_DELAYS_SECONDS": wrong})


def test_a_sub_second_tier_is_waited_as_it_is() -> None:
    policy = RetryPolicy((0.25, 2.0), max_attempts=3, operator_min_delay_s=30)
    assert [policy.delay_after(1), policy.delay_after(1, retry_after_s=0.1)] == [0.25, 0.25]
