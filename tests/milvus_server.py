"""A real Milvus 2.3.5 standalone server for tests, from PyPI's `milvus` wheel.

Milvus Lite differs from a server where it matters to us: on Lite an `insert` of an existing primary
key replaces the row, on a server it adds a second one. Only a server can prove "writes are upserts".

The wheel is installed in its own venv (`.milvus-venv`), not the project's: it is a launcher plus a
bundled Go binary (`milvus run standalone`) with embedded etcd, rocksmq and local storage, so no
other processes (no etcd or MinIO children) and nothing to download at run time.

Usage:
    with MilvusServer(tmp_path) as server:
        client = MilvusClient(uri=server.uri)

Reads after writes on a server are "Bounded" by default (up to ~5 s stale): create collections or
query with `consistency_level="Strong"` to see rows at once; no flush is needed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
VENV = PROJECT / ".milvus-venv"
RUNTIME = VENV / "runtime"  # holds bin/: the unpacked server binary and its libraries
VERSION = "2.3.5"  # the newest manylinux wheel on PyPI (2.3.6+ are macOS only)

# The wheel's own `milvus-server` entry point, with one change: the launcher picks the HTTP port
# (health check and metrics, env METRICS_PORT) by probing upward from 9091 and has no flag for it,
# so two servers started together could pick the same one. We set its start to a free port.
LAUNCHER = "import sys, milvus; milvus.default_server.webservice_port = int(sys.argv.pop(1)); milvus.main()"

# Components that would otherwise advertise the machine's first non-loopback address.
COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")


def milvus_server_python() -> Path:
    """Python of `.milvus-venv`, created on first use (idempotent: a marker file is written last)."""
    python = VENV / "bin" / "python"
    marker = VENV / f".installed-milvus-{VERSION}"
    if not marker.exists():
        if not python.exists():
            subprocess.run([sys.executable if sys.version_info[:2] == (3, 11) else "python3.11",
                            "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"milvus=={VERSION}"], check=True)
        # The launcher unpacks its binaries (250 MB, ~4 s) into <data>/bin unless they are already
        # there (it checks md5 files); unpack them once here and let every data dir link to them.
        subprocess.run([str(python), "-c", "import sys, milvus; milvus._initialize_data_files(sys.argv[1])",
                        str(RUNTIME)], check=True)
        marker.touch()
    return python


def _stop_with_parent() -> None:
    """In the launcher (before exec): SIGINT it if the test process dies, even by SIGKILL.

    The launcher answers SIGINT by stopping the server binary, so a killed test run leaves no server.
    """
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class MilvusServer:
    """`milvus-server` on free ports with its data under `base_dir`; stopped (process group) on exit.

    Every port is moved off its default, so parallel servers and leftovers never clash: the gRPC ports
    by flags, the HTTP port by the launcher above, and the embedded etcd (which ignores
    `--etcd-port` and would listen on 2379/2380) by an etcd config file in `ETCD_CONFIG_PATH`.
    The gRPC and HTTP ports listen on all interfaces (Milvus 2.3 has no bind address); etcd on
    127.0.0.1. Components advertise 127.0.0.1, so it runs in a loopback-only network namespace.
    """

    def __init__(self, base_dir: Path, startup_timeout: float = 120.0):
        self.base_dir = Path(base_dir)
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The launcher's and the server's output; Milvus' own logs are in `data/logs/` beside it."""
        return self.base_dir / "milvus-server.log"

    def start(self) -> MilvusServer:
        python = milvus_server_python()
        data = self.base_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        if not (data / "bin").exists():
            (data / "bin").symlink_to(RUNTIME / "bin")
        (proxy, etcd_client, etcd_peer, http, root, proxy_internal, query_coord, query_node,
         index_coord, index_node, data_coord, data_node) = _free_ports(12)
        self.port = proxy
        etcd_conf = self.base_dir / "embed-etcd.yaml"
        etcd_conf.write_text(
            f"listen-client-urls: http://127.0.0.1:{etcd_client}\n"
            f"advertise-client-urls: http://127.0.0.1:{etcd_client}\n"
            f"listen-peer-urls: http://127.0.0.1:{etcd_peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{etcd_peer}\n"
            f"initial-cluster: default=http://127.0.0.1:{etcd_peer}\n"
        )
        cmd = [str(python), "-c", LAUNCHER, str(http), "--data", str(data),
               "--proxy-port", str(proxy), "--etcd-port", str(etcd_client),
               "--root-coord-port", str(root), "--proxy-internal-port", str(proxy_internal),
               "--query-coord-port", str(query_coord), "--query-node-port", str(query_node),
               "--index-coord-port", str(index_coord), "--index-node-port", str(index_node),
               "--data-coord-port", str(data_coord), "--data-node-port", str(data_node)]
        for component in COMPONENTS:
            cmd += ["--extra-config", f"{component}.ip=127.0.0.1"]
        # With a loaded collection a graceful stop otherwise waits for the query node (up to 1800 s).
        cmd += ["--extra-config", "common.gracefulStopTimeout=3"]
        env = {**os.environ, "ETCD_CONFIG_PATH": str(etcd_conf)}
        with open(self.log_path, "ab") as log:
            # Own session, so stop() can signal the launcher and the server binary together.
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_stop_with_parent)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Ready when a client can list collections (the health endpoint says OK a bit earlier)."""
        from pymilvus import MilvusClient

        deadline = time.monotonic() + self.startup_timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"milvus-server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                # dedicated: close() then really closes the channel (pymilvus 3 otherwise keeps a
                # shared one per process, pinging, which a later client would inherit).
                client = MilvusClient(uri=self.uri, timeout=5, dedicated=True)
                try:
                    client.list_collections()
                    return
                finally:
                    client.close()
            except Exception as exc:  # not up yet: connection refused, or coordinators still starting
                last = exc
                time.sleep(0.5)
        raise TimeoutError(f"milvus-server not ready on {self.uri} after {self.startup_timeout:.0f} s "
                           f"(last error: {last}); see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group (Milvus stops gracefully in 1-5 s), SIGKILL what is left.

        Signalling only the launcher would orphan the server binary: the launcher stops its child on
        SIGINT only.
        """
        if self.proc is None:
            return
        if not self._signal_group(signal.SIGTERM, timeout):
            self._signal_group(signal.SIGKILL, 5.0)
        self.proc.wait(timeout=5)
        self.proc = None

    def _signal_group(self, sig: int, timeout: float) -> bool:
        """Send `sig` to the process group; True once no process of it is left."""
        pgid = self.proc.pid
        deadline = time.monotonic() + timeout
        try:
            os.killpg(pgid, sig)
            while time.monotonic() < deadline:
                self.proc.poll()  # reap the launcher, else it lingers in the group as a zombie
                os.killpg(pgid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            return True
        return False

    def __enter__(self) -> MilvusServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class MilvusLiteServer:
    """`milvus-lite server` (the project's venv) on a free loopback port: Milvus Lite over gRPC.

    The README points users at it for concurrent access to a Lite directory; its Python gRPC server is
    strict about client pings, so it is where an idle pymilvus channel gets `GOAWAY too_many_pings`.
    """

    def __init__(self, base_dir: Path, startup_timeout: float = 60.0):
        self.base_dir = Path(base_dir)
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.port = _free_ports(1)[0]

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MilvusLiteServer:
        log = open(self.base_dir / "milvus-lite-server.log", "ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir", str(self.base_dir / "milvus.db"),
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"milvus-lite server exited with {self.proc.returncode}; see {log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise TimeoutError(f"milvus-lite server not listening on {self.port}; see {log.name}") from None
                time.sleep(0.3)

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None


def drop_all_collections(uri: str) -> None:
    """Empty a shared server between tests (the project's collection names are fixed)."""
    from include.store.client import close_client, open_client

    client = open_client(uri)
    try:
        for name in client.list_collections():
            client.drop_collection(name)
    finally:
        close_client(client, uri)
