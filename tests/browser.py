"""Debian's chromium driven by Playwright (it cannot download a browser here), logged in to Airflow.

    with logged_in_page(base_url, token) as page:
        page.goto(f"{base_url}/connections")
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def logged_in_page(base_url: str, token: str, width: int = 1280, height: int = 900) -> Iterator:
    """A page whose requests carry `token` as the UI's session cookie, as after logging in."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: `make test` installs the Debian package"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            context.add_cookies([{"name": "_token", "value": token, "url": base_url}])
            yield context.new_page()
        finally:
            browser.close()
