"""Fetching a story's page: the address guard (no private or loopback targets), the bounded fetch,
robots.txt, the per-site gate shared by every worker, and the polite fetcher that combines them.
Imports `config`, `records` and `shared_storage` (robots.txt answers are cached there)."""
