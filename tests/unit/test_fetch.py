"""Page fetching over real HTTP on loopback: limits, content types, redirects, charsets."""

from __future__ import annotations

import time

import pytest

from include.config import FetchConfig
from include.crawl.fetch import FetchError, PageFetcher, decode_html
from tests.replay_server import ReplayServer, send

ARTICLE = b"<html><body><h1>Hello</h1><p>Some words of an article.</p></body></html>"


@pytest.fixture
def server():
    with ReplayServer() as replay:
        yield replay


def fetcher(**overrides) -> PageFetcher:
    return PageFetcher(FetchConfig(allow_loopback=True, **overrides))


def test_fetches_html_and_reports_the_final_url(server):
    url = server.add_page("/a", ARTICLE, "text/html; charset=utf-8")
    html, final_url = fetcher().fetch_html(url)
    assert "Some words" in html and final_url == url


def test_loopback_is_refused_by_default_without_a_request(server):
    url = server.add_page("/a", ARTICLE)
    with pytest.raises(FetchError, match="loopback"):
        PageFetcher(FetchConfig()).fetch_html(url)
    assert "/a" not in server.requests


@pytest.mark.parametrize("status", [404, 500, 403])
def test_http_errors_name_the_status(server, status):
    url = server.add_page("/e", b"nope", "text/html", status=status)
    with pytest.raises(FetchError, match=f"HTTP {status}"):
        fetcher().fetch_html(url)


@pytest.mark.parametrize("content_type", ["application/pdf", "image/png", "application/json"])
def test_non_html_types_are_refused(server, content_type):
    url = server.add_page("/f", b"%PDF-1.4 binary", content_type)
    with pytest.raises(FetchError, match="not HTML"):
        fetcher().fetch_html(url)


def test_binary_content_mislabelled_as_html_is_refused(server):
    url = server.add_page("/pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "text/html")
    with pytest.raises(FetchError, match="binary"):
        fetcher().fetch_html(url)


def test_size_cap_holds_with_and_without_content_length(server):
    big = b"<p>" + b"x" * 300_000 + b"</p>"
    url = server.add_page("/big", big)

    def no_length(request):
        request.send_response(200)
        request.send_header("Content-Type", "text/html")
        request.send_header("Connection", "close")
        request.end_headers()
        request.wfile.write(big)
        request.close_connection = True

    server.routes["/big-streamed"] = no_length
    for path in (url, f"{server.base_url}/big-streamed"):
        with pytest.raises(FetchError, match="too big"):
            fetcher(max_bytes=100_000).fetch_html(path)


def test_redirects_are_followed_and_bounded(server):
    target = server.add_page("/target", ARTICLE)
    server.routes["/hop"] = lambda r: _redirect(r, "/target")
    server.routes["/loop"] = lambda r: _redirect(r, "/loop")
    assert fetcher().fetch_html(f"{server.base_url}/hop")[1] == target
    with pytest.raises(FetchError, match="redirects"):
        fetcher().fetch_html(f"{server.base_url}/loop")


def test_redirect_to_metadata_address_is_refused_before_connecting(server):
    server.routes["/meta"] = lambda r: _redirect(r, "http://169.254.169.254/latest/meta-data/")
    with pytest.raises(FetchError, match="link-local"):
        fetcher().fetch_html(f"{server.base_url}/meta")


def test_redirect_to_a_non_http_scheme_is_refused(server):
    server.routes["/file"] = lambda r: _redirect(r, "file:///etc/passwd")
    with pytest.raises(FetchError, match="scheme"):
        fetcher().fetch_html(f"{server.base_url}/file")


def test_a_trickling_server_is_cut_at_the_total_deadline(server):
    def trickle(request):
        request.send_response(200)
        request.send_header("Content-Type", "text/html")
        request.end_headers()
        for _ in range(30):
            request.wfile.write(b"x")
            request.wfile.flush()
            time.sleep(0.5)

    server.routes["/slow"] = trickle
    started = time.monotonic()
    with pytest.raises(FetchError, match="deadline"):
        fetcher(total_deadline=2.0, read_timeout=1.0).fetch_html(f"{server.base_url}/slow")
    assert time.monotonic() - started < 4.0


@pytest.mark.parametrize("stage", ["status line", "headers", "body with a length"])
def test_a_server_trickling_any_part_of_its_answer_is_cut_at_the_total_deadline(server, stage):
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 400\r\n\r\n" + b"<p>x</p>" * 50
    slow_from = {"status line": 0, "headers": 20, "body with a length": answer.index(b"\r\n\r\n") + 4}[stage]

    def trickle(request):
        # Every byte comes within the read timeout, so only the total deadline can stop it.
        request.wfile.write(answer[:slow_from])
        for byte in answer[slow_from:]:
            try:
                request.wfile.write(bytes([byte]))
                request.wfile.flush()
            except OSError:
                return
            time.sleep(0.3)
        request.close_connection = True

    server.routes["/slow"] = trickle
    started = time.monotonic()
    with pytest.raises(FetchError, match="total deadline of 2 s exceeded"):
        fetcher(total_deadline=2.0, read_timeout=1.0).fetch_html(f"{server.base_url}/slow")
    assert time.monotonic() - started < 3.0


def test_empty_page_is_an_error(server):
    url = server.add_page("/empty", b"")
    with pytest.raises(FetchError, match="empty"):
        fetcher().fetch_html(url)


def test_charset_from_header_meta_or_guess():
    latin1 = "<p>Café crème à la française</p>".encode("latin-1")
    assert "Café crème" in decode_html(latin1, "iso-8859-1")
    with_meta = b'<meta charset="iso-8859-1">' + latin1
    assert "Café crème" in decode_html(with_meta, None)
    assert "Café crème" in decode_html(latin1, None)  # undeclared: Windows-1252
    utf8_declared_latin1 = "<p>naïve</p>".encode()
    assert "naïve" in decode_html(utf8_declared_latin1, "iso-8859-1")  # valid UTF-8 wins
    broken = "<p>résumé</p>".encode() + b"\xff\xfe" + "<p>déjà vu</p>".encode()
    text = decode_html(broken, "utf-8")
    assert "résumé" in text and "déjà vu" in text


def _redirect(request, location: str) -> None:
    request.send_response(302)
    request.send_header("Location", location)
    request.send_header("Content-Length", "0")
    request.end_headers()


def test_xhtml_is_accepted_as_html(server):
    server.routes["/x"] = lambda r: send(r, 200, ARTICLE, "application/xhtml+xml")
    assert "Hello" in fetcher().fetch_html(f"{server.base_url}/x")[0]
