"""Refuse to connect anywhere but the public internet (SSRF protection for page fetching).

The check runs on the address the socket is about to connect to, after DNS resolution, for the first
request and for every redirect, so a hostname that resolves to a private address, a decimal-encoded
IP or an IPv4-mapped IPv6 address is refused like its plain form, and DNS rebinding between the
check and the connect is impossible: the socket connects to the address that was checked.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.connection import create_connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(Exception):
    """The target resolves to an address this pipeline must never contact.

    Deliberately not an OSError, so urllib3 does not treat it as a network error to retry.
    """


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv6 ranges Python counts as global that are not routable on the internet: refused whatever they embed.
_NOT_ROUTABLE_V6 = {
    ipaddress.ip_network("64:ff9b:1::/48"): "local-use NAT64 address (RFC 8215)",
    ipaddress.ip_network("::ffff:0:0:0/96"): "IPv4-translated address (RFC 2765)",
    ipaddress.ip_network("::/96"): "IPv4-compatible address (deprecated)",
    ipaddress.ip_network("fec0::/10"): "site-local address (deprecated)",
}


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to (mapped, 6to4, NAT64): the one to judge.

    Python counts 6to4 and NAT64 addresses as global whatever they embed, 169.254.169.254 included.
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_reason(address: IPAddress, allow_loopback: bool) -> str | None:
    """Why `address` may not be contacted, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(address)) is not None:
        address = embedded
    if address.is_loopback:
        return None if allow_loopback else "loopback address"
    if address.is_unspecified:
        return "unspecified address"
    if isinstance(address, ipaddress.IPv6Address):
        if reason := next((why for network, why in _NOT_ROUTABLE_V6.items() if address in network), None):
            return reason
    if address.is_global:
        return None
    if address.is_link_local:
        return "link-local address (cloud metadata range)"
    if address.is_private:
        return "private network address"
    return "non-public address"


def resolve_allowed(host: str, port: int, allow_loopback: bool) -> list[tuple]:
    """Resolve `host` and return its getaddrinfo entries, refusing if any of them is not allowed.

    Every address must pass: a name with one public and one private address is refused, since a
    client retrying another address would otherwise reach the private one.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%")[0])
        reason = refusal_reason(address, allow_loopback)
        if reason:
            raise BlockedAddress(f"refused to connect to {host} ({address}): {reason}")
    return infos


_connect_watch = threading.local()


@contextmanager
def watching_connections(on_connect: Callable[[socket.socket], None]) -> Iterator[None]:
    """Meanwhile, hand every socket that this thread's guarded connections open to `on_connect`."""
    _connect_watch.on_connect = on_connect
    try:
        yield
    finally:
        _connect_watch.on_connect = None


class _GuardedConnectionMixin:
    allow_loopback: bool = False

    def _new_conn(self) -> socket.socket:
        try:
            *_, sockaddr = resolve_allowed(self._dns_host, self.port, self.allow_loopback)[0]
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        try:
            # Connect to the checked address itself; TLS still verifies against the hostname.
            sock = create_connection(sockaddr[:2], self.timeout, socket_options=self.socket_options)
        except OSError as exc:
            raise NewConnectionError(self, f"failed to connect to {self._dns_host}: {exc}") from exc
        if on_connect := getattr(_connect_watch, "on_connect", None):
            on_connect(sock)
        return sock


class _OneRequestPerConnectionMixin:
    def _put_conn(self, conn) -> None:
        # Never reuse a socket: each request opens its own, inside the fetch (and the watch) that asked.
        if conn is not None:
            conn.close()
        super()._put_conn(conn)


def guarded_pool_classes(allow_loopback: bool) -> dict[str, type]:
    """Connection pool classes for urllib3's PoolManager whose sockets pass `resolve_allowed`."""

    class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
        pass

    class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
        pass

    GuardedHTTPConnection.allow_loopback = allow_loopback
    GuardedHTTPSConnection.allow_loopback = allow_loopback

    class GuardedHTTPPool(_OneRequestPerConnectionMixin, HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(_OneRequestPerConnectionMixin, HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}
