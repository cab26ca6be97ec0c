"""Fetch a story's page safely: bounded in time and size, HTML only, public addresses only."""

from __future__ import annotations

import codecs
import re
import time
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from include.config import FetchConfig
from include.url_guard import BlockedAddress, guarded_pool_classes

HTML_TYPES = ("text/html", "application/xhtml+xml")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_BINARY_SIGNATURES = (b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b")


class FetchError(Exception):
    """The page cannot be ingested (HTTP error, not HTML, too big, too slow, refused address)."""


class PageFetcher:
    """A requests session whose every connection goes through the address guard.

    Redirects are followed by hand, so each hop's URL is checked (scheme, address, count) before
    a single byte is sent to it.
    """

    def __init__(self, config: FetchConfig = FetchConfig()) -> None:
        self.config = config
        self.session = requests.Session()
        self.session.trust_env = False  # an environment proxy would bypass the address guard
        self.session.headers.update({"User-Agent": config.user_agent, "Accept": "text/html,application/xhtml+xml"})
        adapter = HTTPAdapter(pool_connections=config.concurrency, pool_maxsize=config.concurrency, max_retries=0)
        adapter.poolmanager.pool_classes_by_scheme = guarded_pool_classes(config.allow_loopback)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def fetch_html(self, url: str) -> tuple[str, str]:
        """Return (decoded HTML, final URL) or raise `FetchError` with a one-line cause."""
        deadline = time.monotonic() + self.config.total_deadline
        for _ in range(self.config.max_redirects + 1):
            if urlsplit(url).scheme.lower() not in ("http", "https"):
                raise FetchError(f"unsupported URL scheme: {url[:200]}")
            response = self._get(url, deadline)
            with response:
                if response.is_redirect or response.is_permanent_redirect:
                    location = response.headers.get("Location", "")
                    if not location:
                        raise FetchError(f"HTTP {response.status_code} redirect without Location")
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code} {response.reason or ''}".strip())
                return self._read_html(response, deadline), url
        raise FetchError(f"more than {self.config.max_redirects} redirects")

    def _get(self, url: str, deadline: float) -> requests.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"total deadline of {self.config.total_deadline:.0f} s exceeded")
        timeout = (min(self.config.connect_timeout, remaining), min(self.config.read_timeout, remaining))
        try:
            return self.session.get(url, stream=True, allow_redirects=False, timeout=timeout)
        except BlockedAddress as exc:
            raise FetchError(str(exc)) from None
        except requests.Timeout:
            raise FetchError("timed out connecting or waiting for the response") from None
        except requests.RequestException as exc:
            raise FetchError(f"connection failed: {_root_cause(exc)}") from None

    def _read_html(self, response: requests.Response, deadline: float) -> str:
        content_type = response.headers.get("Content-Type", "")
        mime = content_type.split(";")[0].strip().lower()
        if mime and mime not in HTML_TYPES:
            raise FetchError(f"not HTML (Content-Type {mime})")
        cap = self.config.max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(f"page too big ({int(declared):,} bytes declared, limit {cap:,})")
        body = bytearray()
        try:
            # read1 returns as soon as any bytes arrive, so a server trickling a byte at a time cannot
            # keep one read going past the deadline (iter_content waits to fill its chunk).
            while piece := response.raw.read1(64 * 1024, decode_content=True):
                body += piece
                if len(body) > cap:
                    raise FetchError(f"page too big (over the {cap:,}-byte limit)")
                if time.monotonic() > deadline:
                    raise FetchError(f"total deadline of {self.config.total_deadline:.0f} s exceeded while reading")
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise FetchError(f"connection broken while reading: {_root_cause(exc)}") from None
        if not body.strip():
            raise FetchError("empty page")
        if body.lstrip()[:8].startswith(_BINARY_SIGNATURES) or b"\x00" in body[:4096]:
            raise FetchError(f"not HTML (binary content served as {mime or 'no type'})")
        return decode_html(bytes(body), _header_charset(content_type))


def decode_html(body: bytes, header_charset: str | None) -> str:
    """Decode page bytes: BOM, then valid UTF-8, then the declared charset, then Windows-1252.

    Valid UTF-8 wins over a declaration because servers often declare Latin-1 for UTF-8 pages,
    while Latin-1 text with accents is almost never valid UTF-8.
    """
    if body.startswith(codecs.BOM_UTF8):
        return body[len(codecs.BOM_UTF8):].decode("utf-8", errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    meta = _META_CHARSET.search(body[:4096])
    for candidate in (header_charset, meta.group(1).decode("ascii", "ignore") if meta else None):
        try:
            return body.decode(codecs.lookup(candidate or "").name, errors="replace")
        except LookupError:
            continue
    # Undeclared and not valid UTF-8: mostly-UTF-8 with a few broken bytes stays UTF-8; otherwise
    # Windows-1252, which is what browsers assume (a superset of Latin-1).
    as_utf8 = body.decode("utf-8", errors="replace")
    non_ascii = sum(1 for byte in body if byte > 127)
    if as_utf8.count("\ufffd") <= 0.1 * non_ascii:
        return as_utf8
    return body.decode("cp1252", errors="replace")


def _header_charset(content_type: str) -> str | None:
    match = re.search(r"charset\s*=\s*[\"']?([^;\"'\s]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else None


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return f"{type(exc).__name__}: {exc}"[:300]
