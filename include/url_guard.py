"""Refuse to connect anywhere but the public internet (SSRF protection for page fetching).

The check runs on the address the socket is about to connect to, after DNS resolution, for the first
request and for every redirect, so a hostname that resolves to a private address, a decimal-encoded
IP or an IPv4-mapped IPv6 address is refused like its plain form, and DNS rebinding between the
check and the connect is impossible: the socket connects to the address that was checked.
"""

from __future__ import annotations

import ipaddress
import socket

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.connection import create_connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(Exception):
    """The target resolves to an address this pipeline must never contact.

    Deliberately not an OSError, so urllib3 does not treat it as a network error to retry.
    """


def refusal_reason(address: IPAddress, allow_loopback: bool) -> str | None:
    """Why `address` may not be contacted, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return None if allow_loopback else "loopback address"
    if address.is_global:
        return None
    if address.is_link_local:
        return "link-local address (cloud metadata range)"
    if address.is_private:
        return "private network address"
    if address.is_unspecified:
        return "unspecified address"
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


class _GuardedConnectionMixin:
    allow_loopback: bool = False

    def _new_conn(self) -> socket.socket:
        try:
            *_, sockaddr = resolve_allowed(self._dns_host, self.port, self.allow_loopback)[0]
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        try:
            # Connect to the checked address itself; TLS still verifies against the hostname.
            return create_connection(sockaddr[:2], self.timeout, socket_options=self.socket_options)
        except OSError as exc:
            raise NewConnectionError(self, f"failed to connect to {self._dns_host}: {exc}") from exc


def guarded_pool_classes(allow_loopback: bool) -> dict[str, type]:
    """Connection pool classes for urllib3's PoolManager whose sockets pass `resolve_allowed`."""

    class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
        pass

    class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
        pass

    GuardedHTTPConnection.allow_loopback = allow_loopback
    GuardedHTTPSConnection.allow_loopback = allow_loopback

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}
