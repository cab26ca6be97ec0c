"""SSRF probes: every one refused before a single byte reaches its target.

Loopback targets point at a canary listener on this machine that counts accepted connections: it
must count none. Every other target is off this machine: the session's connect tripwire (and the
loopback-only network namespace) records any attempt, and the session fails if there was one.
Redirect probes start from an allowed page of the replay (loopback allowed, as for a local replay),
so they test the check made again on every hop. Loopback reached through a redirect needs an allowed
first hop that is not loopback: tests/run_offline.sh puts a public stand-in address on the loopback
interface of its loopback-only namespace, and a replay there redirects to each loopback form.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest

from include.config import FetchConfig
from include.crawl.fetch import FetchError, PageFetcher
from tests.ci import unavailable
from tests.replay_server import ReplayServer


class Canary:
    """A TCP listener that counts connections (IPv4 and IPv6 loopback, same port)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.v4 = socket.create_server(("127.0.0.1", 0))
        self.port = self.v4.getsockname()[1]
        self.sockets = [self.v4]
        try:
            self.sockets.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        except OSError:
            pass  # no IPv6 loopback here: the [::1] probe then cannot connect anyway
        for sock in self.sockets:
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def canary():
    c = Canary()
    yield c
    c.close()


LOOPBACK_FORMS = ["127.0.0.1", "localhost", "[::1]", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]", "127.1"]
NON_PUBLIC = ["0.0.0.0", "10.0.0.1", "192.168.1.1", "172.16.0.1", "169.254.169.254", "2852039166",
              "[::ffff:169.254.169.254]", "[::ffff:10.0.0.1]", "[fd00::1]", "100.64.0.1",
              "[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::1]",  # 169.254.169.254 through NAT64 and 6to4
              # local-use NAT64, IPv4-translated, IPv4-compatible (127.0.0.1, 10.0.0.1) and site-local forms
              "[64:ff9b:1::a9fe:a9fe]", "[::ffff:0:a9fe:a9fe]", "[::7f00:1]", "[::a00:1]", "[fec0::1]"]


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_loopback_in_any_form_is_refused_when_not_allowed(host, canary):
    with pytest.raises(FetchError, match="refused to connect"):
        PageFetcher(FetchConfig()).fetch_html(f"http://{host}:{canary.port}/")
    assert canary.accepted == 0


@pytest.mark.parametrize("host", NON_PUBLIC)
def test_private_link_local_and_metadata_addresses_are_refused_even_for_a_replay(host):
    with pytest.raises(FetchError, match="refused to connect"):
        PageFetcher(FetchConfig(allow_loopback=True)).fetch_html(f"http://{host}/latest/meta-data/")


@pytest.mark.parametrize("host", NON_PUBLIC)
def test_each_probe_is_refused_when_reached_through_a_redirect(host):
    with _redirecting_replay("127.0.0.1", f"http://{host}/latest/meta-data/") as replay:
        with pytest.raises(FetchError, match="refused to connect"):
            PageFetcher(FetchConfig(allow_loopback=True)).fetch_html(f"{replay.base_url}/start")
        assert replay.requests == ["/start"]


def _redirecting_replay(host: str, location: str) -> ReplayServer:
    replay = ReplayServer(host=host)

    def redirect(request):
        request.send_response(302)
        request.send_header("Location", location)
        request.send_header("Content-Length", "0")
        request.end_headers()

    replay.routes["/start"] = redirect
    return replay


@pytest.fixture
def public_standin() -> str:
    """The public address tests/run_offline.sh puts on the namespace's loopback interface."""
    address = os.environ.get("HN_TEST_PUBLIC_STANDIN")
    if not address:
        unavailable("needs the loopback-only namespace of tests/run_offline.sh (root or user namespaces)")
    return address


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_loopback_in_any_form_is_refused_when_reached_through_a_redirect(host, canary, public_standin):
    with _redirecting_replay(public_standin, f"http://{host}:{canary.port}/") as replay:
        with pytest.raises(FetchError, match="refused to connect"):
            PageFetcher(FetchConfig()).fetch_html(f"{replay.base_url}/start")
        assert replay.requests == ["/start"]  # the allowed public hop was fetched
    assert canary.accepted == 0
