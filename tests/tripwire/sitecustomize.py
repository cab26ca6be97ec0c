"""Connect tripwire: loaded by every Python process of the test run (this folder is on PYTHONPATH).

Any socket connect or sendto to an address outside 127.0.0.0/8 and ::1 (and the namespace's public
stand-in, see below) is refused and recorded in
the file named by HN_TRIPWIRE_LOG. The tests run in a loopback-only network namespace as well; the
record is the evidence that nothing, library telemetry included, even tried to leave the machine.
"""

import os

if os.environ.get("HN_TRIPWIRE_LOG"):
    import ipaddress
    import socket
    import traceback

    _log_path = os.environ["HN_TRIPWIRE_LOG"]
    # A public address that tests/run_offline.sh put on the loopback interface of a loopback-only
    # namespace: it plays an allowed public site, and traffic to it cannot leave the namespace.
    _public_standin = os.environ.get("HN_TEST_PUBLIC_STANDIN", "") if os.environ.get("HN_TEST_NETNS") else ""

    def _is_local(address) -> bool:
        if not isinstance(address, tuple):
            return True  # AF_UNIX paths and the like never leave the machine
        host = str(address[0]).split("%")[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host == "localhost"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback or str(ip) == _public_standin

    def _trip(address) -> None:
        with open(_log_path, "a", encoding="utf-8") as log:
            log.write(f"pid {os.getpid()} blocked connect to {address!r}\n")
            log.write("".join(traceback.format_stack(limit=12)) + "\n")
        raise PermissionError(f"test tripwire: connection to {address!r} refused (not loopback)")

    def _guard(method):
        def guarded(self, address, *args):
            if not _is_local(address if not args else args[-1]):
                _trip(address if not args else args[-1])
            return method(self, address, *args)

        return guarded

    socket.socket.connect = _guard(socket.socket.connect)
    socket.socket.connect_ex = _guard(socket.socket.connect_ex)
    socket.socket.sendto = _guard(socket.socket.sendto)

if os.environ.get("HN_TEST_CRASH_POINTS"):
    import crash_points

    crash_points.install(os.environ["HN_TEST_CRASH_POINTS"])
