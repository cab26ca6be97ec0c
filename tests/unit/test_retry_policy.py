"""Time-based retries: the waits, a site's Retry-After, and how `include.ops.status` reports them."""

from __future__ import annotations

from include.config import RetryPolicy
from include.crawl.fetch import retry_after_seconds
from include.ops.status import retry_line

POLICY = RetryPolicy(backoff=(60.0, 600.0, 3600.0, 21600.0))
NOW = 1_800_000_000


def test_waits_grow_then_the_attempts_are_spent():
    assert [POLICY.next_attempt_at(NOW, n, None) - NOW for n in range(1, 5)] == [60, 600, 3600, 21600]
    assert POLICY.max_attempts == 5 and POLICY.next_attempt_at(NOW, 5, None) == 0


def test_a_longer_retry_after_wins_and_is_bounded():
    assert POLICY.next_attempt_at(NOW, 1, 300.0) - NOW == 300  # the site asked for more than our minute
    assert POLICY.next_attempt_at(NOW, 3, 5.0) - NOW == 3600  # ...or less: our backoff still holds
    assert POLICY.next_attempt_at(NOW, 1, 10**9) - NOW == 6 * 3600  # a silly ask is capped


def test_retry_after_as_seconds_or_http_date():
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds("") is None


def test_status_shows_the_attempt_and_the_next_try():
    line = retry_line({"attempts": 2, "next_attempt_at": NOW + 600}, POLICY, NOW)
    assert line == "attempt 2 of 5; next try 2027-01-15 08:10:00 UTC (in 10 min)"
    assert "no more tries" in retry_line({"attempts": 5, "next_attempt_at": 0}, POLICY, NOW)
    assert "due now" in retry_line({"attempts": 1, "next_attempt_at": NOW - 1}, POLICY, NOW)
