"""Shared set-up of the benchmarks: a replay of the whole corpus, an Airflow home, a results table."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time

from include.config import PROJECT_ROOT
from tests import corpus
from tests.airflow_cli import AirflowEnv, DagRunResult
from tests.replay_server import ReplayServer, load_corpus

RESULTS = PROJECT_ROOT / "bench" / "results"

# Each bench database gets its own embedding service: let them go soon after the bench.
os.environ.setdefault("HN_INGEST_EMBEDDING_SERVICE_IDLE", "60")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python {platform.python_version()}"


def corpus_replay(stories: int = 200, sites: int | None = None) -> ReplayServer:
    """A replay whose first `stories` URL stories point at the corpus pages, one each; `with` starts and stops it.

    The pages are served from as many sites as their original domains (195 for 200 pages), so the
    per-host limits meet the spread of hosts real stories have; `sites=N` puts them on N sites instead."""
    pages = corpus.pages()[:stories]
    groups = corpus.site_groups(pages) if sites is None else [i % sites for i in range(len(pages))]
    replay = ReplayServer(page_hosts=max(groups) + 1)
    replay.mapped = load_corpus(replay, url_stories=stories, text_posts=0, dead=0, deleted=0, sites=groups)
    # Not started here: `with` starts it. Started twice, each site had two serve_forever loops; stop() ended
    # one, and the other spun on the closed socket for the rest of the bench (~195 threads, a core).
    return replay


def fresh_env(name: str, replay: ReplayServer) -> AirflowEnv:
    root = RESULTS / name
    subprocess.run(["rm", "-rf", str(root)], check=True)
    env = AirflowEnv(root / "airflow", root / "data", replay.connection_env())
    env.migrate()
    return env


def timed_dags_test(env: AirflowEnv, conf: dict | None = None) -> tuple[DagRunResult, float]:
    started = time.monotonic()
    result = env.dags_test(conf, timeout=3600)
    wall = time.monotonic() - started
    if not result.succeeded:
        raise SystemExit(f"hn_ingest failed:\n{result.log[-5000:]}")
    return result, wall


def run_summary(result: DagRunResult) -> dict:
    line = result.lines("run summary: ")[-1]
    return json.loads(line.split("run summary: ", 1)[1].strip())


def print_table(title: str, rows: list[tuple[str, str]], save_as: str | None = None) -> None:
    width = max(len(k) for k, _ in rows)
    text = "\n".join([f"## {title}", f"machine: {machine()}", *(f"{k:<{width}}  {v}" for k, v in rows)])
    print(text, flush=True)
    if save_as:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / save_as).write_text(text + "\n")


def corpus_ok() -> None:
    if not corpus.corpus_available():
        raise SystemExit(f"the corpus is missing at {corpus.corpus_dir()}")


class TaggedSampler:
    """A thread that samples the processes tagged `HN_BENCH_TAG=<tag>` while the `with` block runs."""

    def __init__(self, tag: str) -> None:
        import threading

        self.marker = f"HN_BENCH_TAG={tag}".encode()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        raise NotImplementedError


class PeakMemory(TaggedSampler):
    """Peak resident memory (VmHWM) of every process whose environment carries `HN_BENCH_TAG=<tag>`.

    Give the tag to the command under test (its environment): the `airflow dags test` process, the
    task processes it starts and the embedding service they start all inherit it, the bench itself
    does not. Sampled every 0.2 s; VmHWM is each process's own high-water mark, so a sample anywhere
    in a process's life after its peak sees it. The total is the sum of the peaks (an upper bound on
    what was resident at once).
    """

    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.peaks: dict[int, tuple[str, int]] = {}  # pid → (command, VmHWM kB)

    def _sample(self) -> None:
        from pathlib import Path

        while True:
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    self._read(proc)
            if self._stop.wait(0.2):
                return

    def _read(self, proc) -> None:
        try:
            if self.marker not in (proc / "environ").read_bytes().split(b"\0"):
                return
            hwm = next(int(line.split()[1]) for line in (proc / "status").read_text().splitlines()
                       if line.startswith("VmHWM:"))
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80]
        except (OSError, StopIteration, ValueError):
            return  # gone meanwhile, or a kernel thread
        pid = int(proc.name)
        self.peaks[pid] = (command, max(hwm, self.peaks.get(pid, ("", 0))[1]))

    def total_mb(self) -> float:
        return sum(kb for _, kb in self.peaks.values()) / 1024

    def largest(self, n: int = 3) -> str:
        top = sorted(self.peaks.values(), key=lambda p: -p[1])[:n]
        return ", ".join(f"{_short(c)} {kb / 1024:.0f}" for c, kb in top)


def _short(command: str) -> str:
    if "embedding_service" in command:
        return "embedding service"
    if "dags test" in command:
        return "dags test"
    return command.split(" ")[-1][:30] or "?"


def cold_runtime_dir(env: AirflowEnv) -> None:
    """A runtime directory of its own: the run starts its own embedding service, cold (no model loaded)."""
    folder = env.home.parent / "run"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    env.extra_env["HN_INGEST_RUNTIME_DIR"] = str(folder)
