"""Airflow hook for the Hacker News APIs (Firebase for items, Algolia for searches by date)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException


class HackerNewsHook(BaseHook):
    """Builds an `include.hn.client.HackerNewsClient` from the ``hacker_news_default`` connection.

    Connection fields: ``host`` is the Firebase base URL ending in ``/v0``; ``extra.algolia_url`` the
    Algolia base URL ending in ``/api/v1``. Without the connection, the public APIs are used.

    :param hacker_news_conn_id: the Airflow connection to use.
    """

    conn_name_attr = "hacker_news_conn_id"
    default_conn_name = "hacker_news_default"
    conn_type = "http"
    hook_name = "Hacker News"

    def __init__(self, hacker_news_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hacker_news_conn_id = hacker_news_conn_id

    def get_conn(self):
        """The client, its Algolia calls within the request budget every worker shares."""
        from include.config import ALGOLIA_API_URL, HN_API_URL, PolitenessConfig
        from include.crawl.host_gate import request_budget
        from include.hn.client import HackerNewsClient

        politeness = PolitenessConfig()
        budget = request_budget(politeness, "api:algolia", politeness.algolia_rate)
        try:
            connection = self.get_connection(self.hacker_news_conn_id)
        except AirflowNotFoundException:
            return HackerNewsClient(algolia_turn=budget)
        base_url = (connection.host or HN_API_URL).rstrip("/")
        if "://" not in base_url:  # an http connection may split the scheme from the host
            base_url = f"{connection.schema or 'https'}://{base_url}"
        algolia_url = (connection.extra_dejson.get("algolia_url") or ALGOLIA_API_URL).rstrip("/")
        return HackerNewsClient(base_url=base_url, algolia_url=algolia_url, algolia_turn=budget)
