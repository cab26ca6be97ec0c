"""Fetch a story's page safely: bounded in time and size, HTML only, public addresses only."""

from __future__ import annotations

import codecs
import email.utils
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from include.config import FetchConfig
from include.crawl.address_guard import BlockedAddress, guarded_pool_classes, watching_connections

HTML_TYPES = ("text/html", "application/xhtml+xml")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_BINARY_SIGNATURES = (b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b")


class FetchError(Exception):
    """The page cannot be ingested (HTTP error, not HTML, too big, too slow, refused address)."""


class RetryLater(FetchError):
    """The site asked us to come back later (429, or 503 with Retry-After): `seconds` it asked for."""

    def __init__(self, message: str, seconds: float | None) -> None:
        super().__init__(message)
        self.seconds = seconds


class RedirectedElsewhere(FetchError):
    """A redirect leads to another site: its request is left to that site's robots.txt and limits."""

    def __init__(self, url: str) -> None:
        super().__init__(f"redirected to another site: {url[:200]}")
        self.url = url


@dataclass(frozen=True)
class FetchedPage:
    """A fetch's result: the page, or `not_modified` when the site answered 304 to our validators."""

    html: str
    final_url: str
    etag: str = ""
    last_modified: str = ""
    not_modified: bool = False


@dataclass(frozen=True)
class FetchedText:
    """A small text resource (robots.txt): its status and body, whatever the status."""

    status: int
    text: str


class Deadline:
    """A fetch's total deadline, enforced on its sockets as well.

    Socket timeouts bound each read, not their sum: a server sending its status line or headers a
    byte every few seconds would hold a fetch indefinitely. At the deadline a timer shuts down every
    socket the fetch opened, so whatever read is blocked returns at once.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.remaining() <= 0

    def error(self, while_doing: str = "") -> FetchError:
        return FetchError(f"total deadline of {self.seconds:.0f} s exceeded{while_doing}")

    def watch(self, sock: socket.socket) -> None:
        self._sockets.append(sock)

    def _expire(self) -> None:
        self.expired = True
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()


class PageFetcher:
    """A requests session whose every connection goes through the address guard.

    Redirects are followed by hand, so each hop's URL is checked (scheme, address, count) before
    a single byte is sent to it.
    """

    def __init__(self, config: FetchConfig = FetchConfig()) -> None:
        self.config = config
        self.session = requests.Session()
        self.session.trust_env = False  # an environment proxy would bypass the address guard
        # One connection per request (see url_guard): every socket opens inside its fetch's deadline.
        self.session.headers.update({"User-Agent": config.user_agent, "Accept": "text/html,application/xhtml+xml",
                                     "Connection": "close"})
        adapter = HTTPAdapter(pool_connections=config.concurrency, pool_maxsize=config.concurrency, max_retries=0)
        adapter.poolmanager.pool_classes_by_scheme = guarded_pool_classes(config.allow_loopback)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def fetch_html(self, url: str) -> tuple[str, str]:
        """Return (decoded HTML, final URL) or raise `FetchError` with a one-line cause."""
        page = self.fetch_page(url)
        return page.html, page.final_url

    def fetch_page(self, url: str, etag: str = "", last_modified: str = "",
                   before_request: Callable[[str], None] | None = None) -> FetchedPage:
        """Fetch a page, conditionally when validators from an earlier fetch are given (a 304 returns
        `not_modified` and no body). Raises `FetchError` (`RetryLater` for 429/503) with a one-line cause.
        `before_request` is called with each request's URL (redirects included) as it leaves; it may
        raise (`RedirectedElsewhere`) to stop there."""
        conditions = {"If-None-Match": etag} if etag else {}
        if last_modified:
            conditions["If-Modified-Since"] = last_modified
        with Deadline(self.config.total_deadline) as deadline, watching_connections(deadline.watch):
            response, url = self._follow(url, deadline, conditions, before_request)
            with response:
                validators = {"etag": response.headers.get("ETag", ""),
                              "last_modified": response.headers.get("Last-Modified", "")}
                if response.status_code == 304 and conditions:
                    return FetchedPage("", url, etag=validators["etag"] or etag,
                                       last_modified=validators["last_modified"] or last_modified, not_modified=True)
                if response.status_code in (429, 503):
                    raise _retry_later(response)
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code} {response.reason or ''}".strip())
                return FetchedPage(self._read_html(response, deadline), url, **validators)

    def fetch_text(self, url: str, max_bytes: int, before_request: Callable[[str], None] | None = None) -> FetchedText:
        """A small text file (robots.txt) under the same guard, deadline and redirects as a page; any
        status is returned, not raised."""
        with Deadline(self.config.total_deadline) as deadline, watching_connections(deadline.watch):
            response, _ = self._follow(url, deadline, {"Accept": "text/plain,*/*"}, before_request)
            with response:
                if response.status_code != 200:
                    return FetchedText(response.status_code, "")
                body = self._read_capped(response, deadline, max_bytes, truncate=True)
        return FetchedText(200, body.decode("utf-8", errors="replace"))

    def _follow(self, url: str, deadline: Deadline, headers: dict[str, str],
                before_request: Callable[[str], None] | None) -> tuple[requests.Response, str]:
        """GET `url`, following redirects by hand; return the final response (open) and its URL."""
        for _ in range(self.config.max_redirects + 1):
            if urlsplit(url).scheme.lower() not in ("http", "https"):
                raise FetchError(f"unsupported URL scheme: {url[:200]}")
            if before_request is not None:
                before_request(url)
            response = self._get(url, deadline, headers)
            if not (response.is_redirect or response.is_permanent_redirect):
                return response, url
            with response:
                location = response.headers.get("Location", "")
                if not location:
                    raise FetchError(f"HTTP {response.status_code} redirect without Location")
                url = urljoin(url, location)
        raise FetchError(f"more than {self.config.max_redirects} redirects")

    def _get(self, url: str, deadline: Deadline, headers: dict[str, str]) -> requests.Response:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise deadline.error()
        timeout = (min(self.config.connect_timeout, remaining), min(self.config.read_timeout, remaining))
        try:
            return self.session.get(url, stream=True, allow_redirects=False, timeout=timeout, headers=headers)
        except BlockedAddress as exc:
            raise FetchError(str(exc)) from None
        except requests.RequestException as exc:
            if deadline.passed():
                raise deadline.error(" waiting for the response") from None
            if isinstance(exc, requests.Timeout):
                raise FetchError("timed out connecting or waiting for the response") from None
            raise FetchError(f"connection failed: {_root_cause(exc)}") from None

    def _read_html(self, response: requests.Response, deadline: Deadline) -> str:
        content_type = response.headers.get("Content-Type", "")
        mime = content_type.split(";")[0].strip().lower()
        if mime and mime not in HTML_TYPES:
            raise FetchError(f"not HTML (Content-Type {mime})")
        body = self._read_capped(response, deadline, self.config.max_bytes)
        if not body.strip():
            raise FetchError("empty page")
        if body.lstrip()[:8].startswith(_BINARY_SIGNATURES) or b"\x00" in body[:4096]:
            raise FetchError(f"not HTML (binary content served as {mime or 'no type'})")
        return decode_html(body, _header_charset(content_type))

    def _read_capped(self, response: requests.Response, deadline: Deadline, cap: int, truncate: bool = False) -> bytes:
        """The body, at most `cap` bytes: beyond it a `FetchError`, or with `truncate` the first `cap` bytes
        (robots.txt: RFC 9309 has crawlers parse the first 500 KiB of a bigger file)."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap and not truncate:
            raise FetchError(f"page too big ({int(declared):,} bytes declared, limit {cap:,})")
        body = bytearray()
        try:
            # read1 returns as soon as any bytes arrive, so a server trickling a byte at a time cannot
            # keep one read going past the deadline (iter_content waits to fill its chunk).
            while piece := response.raw.read1(64 * 1024, decode_content=True):
                body += piece
                if len(body) > cap:
                    if truncate:
                        return bytes(body[:cap])
                    raise FetchError(f"page too big (over the {cap:,}-byte limit)")
                if deadline.passed():
                    raise deadline.error(" while reading")
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if deadline.passed():
                raise deadline.error(" while reading") from None
            raise FetchError(f"connection broken while reading: {_root_cause(exc)}") from None
        if deadline.expired:  # the shut-down socket ended the body early: it is not the whole page
            raise deadline.error(" while reading")
        return bytes(body)


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


def _retry_later(response: requests.Response) -> RetryLater:
    seconds = retry_after_seconds(response.headers.get("Retry-After", ""))
    asked = f" (Retry-After {seconds:.0f} s)" if seconds is not None else ""
    return RetryLater(f"HTTP {response.status_code} {response.reason or ''}".strip() + asked, seconds)


def retry_after_seconds(value: str, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None when absent or malformed."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _header_charset(content_type: str) -> str | None:
    match = re.search(r"charset\s*=\s*[\"']?([^;\"'\s]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else None


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return f"{type(exc).__name__}: {exc}"[:300]
