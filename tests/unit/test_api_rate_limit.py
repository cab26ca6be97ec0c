"""The API's per-user budget: a token bucket per user, and the 429 a user past it gets (in-process app)."""

from __future__ import annotations

import sys

import pytest

from include.config import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "plugins"))
from hn_providers import rate_limit  # noqa: E402
from hn_providers.rate_limit import TokenBuckets  # noqa: E402


def test_a_bucket_allows_a_burst_then_its_rate():
    buckets = TokenBuckets(per_minute=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 0.0) == pytest.approx(20.0)  # one token every 20 s
    assert buckets.take("b", 0.0) == 0.0  # another user's budget is its own
    assert buckets.take("a", 20.0) == 0.0 and buckets.take("a", 20.0) > 0
    assert TokenBuckets(per_minute=0).take("a", 0.0) == 0.0  # 0: no limit


def test_a_user_past_the_budget_gets_429_with_retry_after(monkeypatch):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient
    from hn_providers.api import create_app
    from hn_providers.auth import require_user

    monkeypatch.setattr(rate_limit, "BUCKETS", TokenBuckets(per_minute=2))
    app = create_app()
    who = {"name": "alice"}
    app.dependency_overrides[require_user] = lambda: None
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username=who["name"], role="viewer")
    client = TestClient(app)
    # k=0 is refused before the store is opened: what answers is the limiter, then the check.
    answers = [client.get("/api/search", params={"q": "x", "k": 0}) for _ in range(3)]
    assert [a.status_code for a in answers] == [400, 400, 429]
    # One token every 30 s: the wait left is at most that, less what a slow machine took between requests.
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 30 and "at most 2 a minute" in answers[2].json()["error"]
    who["name"] = "bob"
    assert client.get("/api/search", params={"q": "x", "k": 0}).status_code == 400
