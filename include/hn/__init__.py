"""Hacker News as a source: the API client (Firebase items, Algolia search), a story's lifecycle on HN
(edited, killed, deleted) and its comment threads. Imports `config` and `records` only."""
