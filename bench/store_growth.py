"""Bench 10: the store at real volume. How Milvus Lite and the control path behave as `hn_chunks` grows.

    python -m bench.store_growth                                  # 10, 15,000 and 100,000 stories, 10 chunks each
    python -m bench.store_growth --sizes 10 15000 --repeats 3     # only the small and the middle store
    python -m bench.store_growth --sizes 100000:1000000           # stories:chunks, explicitly
    python -m bench.store_growth --grow-only --sizes 100000       # build (and cache) the stores, measure nothing
    python -m bench.store_growth --backend server                  # the same on a Milvus 2.3.5 server (tests/milvus_server.py)

Each size is a real Milvus Lite directory grown through the real schema (`StoreSchema.ensure_collections`)
with synthetic rows shaped by the writer's own `_chunk_row` and as the ledger writes states: text made of
real words from the corpus truths (read in place), random unit vectors, a month of stories (85 % ingested
with their thread schedule done, 8 % skipped, 5 % failed, 2 % removed), ~60 % page and ~40 % comment
chunks. Grown stores are cached under `data/bench-stores/<size>/` (a `grown.json` written last marks one
complete) and reused by later runs; with `--backend server` each size is a Milvus server (the 2.3.5 wheel that
the tests use) whose data sits under `data/bench-stores/<size>-server/`, started for the bench and grown through
the same schema (a server before 2.5 has no BM25: `hybrid` answers dense there, and says so). Synthetic stories never become due (threads read through every
refresh step, failed stories waiting a year or out of attempts): a DAG run must not refresh or remove
stories the replay does not know. Every DAG run adds its 10 corpus stories to the cached store (the next
run picks 10 others: 200 runs' worth).

Per size, each figure in a process of its own (the bench never opens a store itself):
- open + load: `open_client` and `ensure_collections` (loads both collections), cold (the store's files
  evicted from the page cache with posix_fadvise, no global cache drop) and warm (min of `--repeats`),
  with the process's RSS after loading and its peak (VmHWM);
- `python -m include.ops.status`: wall and peak RSS, or "did not finish in N s";
- the control path, each call timed (first call, and min of the repeats): `ledger.due_threads`,
  `due_failed_ids`, `states` of 10 ids, `story_ids_with_status("ingested", "failed")`, and two the DAG run
  makes on `hn_chunks`: `writer.comment_hashes` of 10 stories and `reader.count()`;
- `include.store.search.search` per mode (dense, text, hybrid): the first query, then p50/p95 over up to
  `--queries` corpus sentences within `--search-budget` seconds, with a fixed query vector (no model);
- through the HTTP API (a real `airflow api-server` with the plugin): `/hn-ingest/api/status` and a hybrid
  `/hn-ingest/api/search` (the real model, warm), first request and p50/p95 over `--api-requests`;
- one `airflow dags test hn_ingest` run of 10 new corpus stories (the replay, warm embedding service)
  against the store: wall, per-task seconds, peak RSS per process and sampled RSS per task.
Steps stream their figures as they go, so a step cut by its timeout still reports what it finished.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from datetime import datetime
from pathlib import Path
from statistics import quantiles

from bench.common import RESULTS, PeakMemory, TaggedSampler, corpus_ok, corpus_replay, machine, print_table
from include.config import PROJECT_ROOT

STORES = PROJECT_ROOT / "data" / "bench-stores"
WORK = RESULTS / "store-growth"
GROW_VERSION = 1  # change when the generator changes: cached stores of another version are not reused
BASE_STORY_ID = 40_000_000  # above the corpus's HN ids (25.57M): never a story the replay serves
STORY_STRIDE = 2_048  # ids between two stories: room for a thread's comment ids (comment_id = story_id + k)
MAX_COMMENT_CHUNKS = STORY_STRIDE - 2
DAY = 86_400
MARK = "@@ "  # a worker's figure lines start with this


# -- the parent: one size after the other --------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["10", "15000", "100000"],
                        help="stories per store, or stories:chunks (default chunks: stories x --chunks-per-story)")
    parser.add_argument("--stories", type=int, help="one size only (overrides --sizes)")
    parser.add_argument("--chunks-per-story", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="warm opens and control-path calls: min of these")
    parser.add_argument("--queries", type=int, default=50, help="searches per mode")
    parser.add_argument("--search-budget", type=float, default=120.0, help="seconds per mode before stopping early")
    parser.add_argument("--status-timeout", type=float, default=300.0, help="each CLI run (status, search)")
    parser.add_argument("--step-timeout", type=float, default=1200.0, help="each open, probe and growth step")
    parser.add_argument("--dag-timeout", type=float, default=1800.0)
    parser.add_argument("--no-dag", action="store_true", help="skip the airflow dags test run")
    parser.add_argument("--grow-only", action="store_true", help="build the cached stores, measure nothing")
    parser.add_argument("--backend", choices=("lite", "server"), default="lite")
    parser.add_argument("--api-requests", type=int, default=30, help="requests per API route")
    parser.add_argument("--no-api", action="store_true", help="skip the HTTP API step")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        WORKERS[args.worker](args.store, json.loads(args.spec or "{}"))
        return
    corpus_ok()
    sizes = [parse_size(f"{args.stories}", args.chunks_per_story)] if args.stories else \
        [parse_size(s, args.chunks_per_story) for s in args.sizes]
    started = time.monotonic()
    print(f"store growth bench: sizes {sizes} on {args.backend}; code {code_version()}; {machine()}; "
          f"load average {load()}", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    airflow = None if ((args.no_dag and args.no_api) or args.grow_only) else AirflowSetup()
    columns: list[dict] = []
    try:
        for stories, chunks in sizes:
            column = {"size": f"{stories:,} stories / {chunks:,} chunks", "load before": load()}
            with StoreTarget(store_dir(stories, chunks, args.seed, args.backend), args.backend) as target:
                column["grown"] = ensure_grown(target, stories, chunks, args)
                if not args.grow_only:
                    measure(target, stories, column, args, airflow)
            column["load after"] = load()
            columns.append(column)
            print(json.dumps(column, default=str), flush=True)
    finally:
        if airflow:
            airflow.close()
    if not args.grow_only:
        backend = "Milvus Lite" if args.backend == "lite" else "a Milvus 2.3.5 server"
        print_table(f"Store growth: {backend} and the control path by store size (code {code_version()})",
                    table_rows(columns, time.monotonic() - started), f"store_growth-{args.backend}.txt")


def code_version() -> str:
    """The commit measured, and whether the code differs from it (HN_BENCH_CODE names an exported tree)."""
    if os.environ.get("HN_BENCH_CODE"):
        return os.environ["HN_BENCH_CODE"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "include", "dags", "plugins"], cwd=PROJECT_ROOT,
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with uncommitted changes" if changed else "")


def parse_size(text: str, per_story: float) -> tuple[int, int]:
    stories, _, chunks = text.partition(":")
    return int(stories), int(chunks) if chunks else int(round(int(stories) * per_story))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def store_dir(stories: int, chunks: int, seed: int, backend: str = "lite") -> Path:
    return STORES / (f"s{stories}-c{chunks}-seed{seed}-v{GROW_VERSION}" + ("-server" if backend == "server" else ""))


class StoreTarget:
    """Where a size's store lives: a Milvus Lite directory, or a Milvus server (data in `folder`) that runs
    while the bench measures it. `location` is what a client, a CLI or a connection is given."""

    def __init__(self, folder: Path, backend: str) -> None:
        self.folder, self.backend = folder, backend
        self.server = None
        self.location = str(folder / "milvus.db")

    @property
    def name(self) -> str:
        return self.folder.name

    def __enter__(self) -> StoreTarget:
        if self.backend == "server":
            from tests.milvus_server import MilvusServer

            self.folder.mkdir(parents=True, exist_ok=True)
            self.server = MilvusServer(self.folder, startup_timeout=300).start()
            self.location = self.server.uri
        return self

    def __exit__(self, *exc) -> None:
        if self.server:
            self.server.stop()

    def evict(self) -> None:
        """The store's files out of the page cache (a server keeps its store loaded: nothing to evict)."""
        if self.backend == "lite":
            evict(self.folder)


def ensure_grown(target: StoreTarget, stories: int, chunks: int, args) -> str:
    marker = target.folder / "grown.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        return f"cached ({info['seconds']:.0f} s)"
    if target.backend == "lite":  # a growth cut short is started again (a server's collections are dropped)
        subprocess.run(["rm", "-rf", str(target.folder)], check=True)
        target.folder.mkdir(parents=True)
    spec = {"stories": stories, "chunks": chunks, "seed": args.seed}
    result = run_worker("grow", target.location, spec, args.step_timeout + chunks / 200, f"growing {stories}/{chunks}")
    if "done" not in result:
        raise SystemExit(f"growing the {stories}-story store failed or timed out: {result}")
    marker.write_text(json.dumps({**spec, **result["done"], "grow_version": GROW_VERSION,
                                  "grown_at": datetime.now().isoformat(timespec="seconds")}))
    return f"now ({result['done']['seconds']:.0f} s)"


def measure(target: StoreTarget, stories: int, column: dict, args, airflow: AirflowSetup | None) -> None:
    location = target.location
    target.evict()
    column["open cold"] = run_worker("open", location, {}, args.step_timeout, "open cold")
    column["open warm"] = [run_worker("open", location, {}, args.step_timeout, "open warm")
                           for _ in range(args.repeats)]
    column["status"] = run_cli(location, args.status_timeout, "include.ops.status")
    # A search by hand; BM25 so that no model loads: the store's own cost (dense where the server has no BM25).
    column["search_cli"] = run_cli(location, args.status_timeout, "include.ops.search", "rust async runtime",
                                   "--mode", "text" if args.backend == "lite" else "dense", "-k", "5")
    spec = {"stories": stories, "seed": args.seed, "repeats": args.repeats, "queries": args.queries,
            "search_budget": args.search_budget, "corpus_ids": corpus_story_ids()}
    column["probe"] = run_worker("probe", location, spec, args.step_timeout, "control path and searches")
    if airflow and not args.no_api:
        column["api"] = airflow.api_latency(location, _queries(args.api_requests), args.status_timeout)
    if airflow and not args.no_dag:
        present = set(column["probe"].get("present", []))
        fresh = [i for i in corpus_story_ids() if i not in present][:10]
        column["dag"] = airflow.run(location, target.name, fresh, args.dag_timeout) if len(fresh) == 10 else {
            "error": "fewer than 10 corpus stories left that the store does not hold"}


def evict(folder: Path) -> None:
    """Drop the store's files (only those) from the page cache: the next open reads them from disk."""
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            finally:
                os.close(fd)


def run_worker(kind: str, location: str, spec: dict, timeout: float, what: str) -> dict:
    """Run a worker in its own process; its figures as they arrived, `timeout` set if it was cut."""
    command = [sys.executable, "-m", "bench.store_growth", "--worker", kind, "--store", location,
               "--spec", json.dumps(spec)]
    figures: dict = {}
    log = WORK / f"worker-{kind}.log"
    started = time.monotonic()
    with open(log, "a") as err:
        err.write(f"\n== {datetime.now().isoformat(timespec='seconds')} {kind} {location}\n")
        err.flush()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, cwd=PROJECT_ROOT,
                                   env=bench_env(), start_new_session=True)
        reader = threading.Thread(target=_collect, args=(process.stdout, figures), daemon=True)
        reader.start()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            figures["timeout"] = f"did not finish in {timeout:.0f} s"
        reader.join(timeout=10)
    figures["wall"] = time.monotonic() - started
    if process.returncode not in (0, None) and "timeout" not in figures:
        figures["error"] = f"exit {process.returncode}; see {log}"
    print(f"  {what}: {_brief(figures)}", flush=True)
    return figures


def _collect(stream, figures: dict) -> None:
    for line in stream:
        if line.startswith(MARK):
            figures.update(json.loads(line[len(MARK):]))


def _brief(figures: dict) -> str:
    text = json.dumps({k: v for k, v in figures.items() if k != "present"}, default=str)
    return text if len(text) < 600 else text[:600] + "..."


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def bench_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
            "DO_NOT_TRACK": "1"}


def milvus_connection(location: str) -> str:
    """`AIRFLOW_CONN_MILVUS_DEFAULT` for a Lite directory or a server URI."""
    return json.dumps({"conn_type": "milvus", "host": location})


def run_cli(location: str, timeout: float, *command: str) -> dict:
    """`python -m <command>` as a user runs it, with the store as its connection: wall and peak RSS."""
    tag = f"store-growth-cli-{os.getpid()}-{time.monotonic_ns()}"
    env = {**bench_env(), "HN_BENCH_TAG": tag,
           "AIRFLOW_CONN_MILVUS_DEFAULT": milvus_connection(location)}
    started = time.monotonic()
    with PeakMemory(tag) as memory:
        process = subprocess.Popen([sys.executable, "-m", *command], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT, env=env,
                                   start_new_session=True)
        try:
            _, err = process.communicate(timeout=timeout)
            result = {"wall": time.monotonic() - started} if process.returncode == 0 else {
                "error": f"exit {process.returncode}: {err[-300:]}"}
        except subprocess.TimeoutExpired:
            _kill_group(process)
            result = {"timeout": f"did not finish in {timeout:.0f} s"}
    result["peak_mb"] = memory.total_mb()
    print(f"  {command[0]}: {result}", flush=True)
    return result


@functools.cache
def corpus_story_ids(limit: int = 200) -> list[int]:
    """The corpus stories a replay serves with pages: the candidates for a DAG run's 10 new stories."""
    from tests.replay_server import ReplayServer, load_corpus

    replay = ReplayServer()  # never started: only its items are read
    try:
        return sorted(load_corpus(replay, url_stories=limit, text_posts=0, dead=0, deleted=0))
    finally:
        replay.httpd.server_close()


class AirflowSetup:
    """One Airflow home for the bench's DAG runs, with its own runtime dir (embedding service)."""

    def __init__(self) -> None:
        from tests.airflow_cli import AirflowEnv

        root = WORK / "airflow-run"
        subprocess.run(["rm", "-rf", str(root)], check=True)
        self.env = AirflowEnv(root / "airflow", root / "data")
        runtime = root / "run"
        runtime.mkdir(mode=0o700, parents=True)
        self.env.extra_env.update({"HN_INGEST_RUNTIME_DIR": str(runtime), "HN_INGEST_EMBEDDING_SERVICE_IDLE": "600"})
        self.env.migrate()

    def run(self, location: str, name: str, story_ids: list[int], timeout: float) -> dict:
        """One `airflow dags test hn_ingest` of `story_ids` (the replay serves only those) on the store."""
        # The embedding service is started and warm before the run: each size meets the same model state.
        self.env.run(sys.executable, "-c", "from include.embed.service import embed; embed(['warm up'])", timeout=300)
        tag = f"store-growth-dag-{time.monotonic_ns()}"
        with corpus_replay(200) as replay:
            for story_id in [i for i, item in replay.items.items() if item and item.get("type") == "story"]:
                if story_id not in story_ids:
                    del replay.items[story_id]
            self.env.extra_env.update({**replay.connection_env(), "HN_BENCH_TAG": tag,
                                       "AIRFLOW_CONN_MILVUS_DEFAULT": milvus_connection(location)})
            started = time.monotonic()
            with PeakMemory(tag) as memory, RssTimeline(tag) as timeline:
                try:
                    result = self.env.dags_test({"batch_size": 10}, timeout=timeout)
                except subprocess.TimeoutExpired:
                    return {"timeout": f"did not finish in {timeout:.0f} s", "peak_mb": memory.total_mb(),
                            "processes": memory.largest(4)}
            wall = time.monotonic() - started
        (WORK / f"dag-{name}.log").write_text(result.log)
        figures = {"wall": wall, "succeeded": result.succeeded, "peak_mb": memory.total_mb(),
                   "processes": memory.largest(4),
                   "task_seconds": {k: round(v, 1) for k, v in result.task_seconds().items()},
                   "task_peak_mb": timeline.per_task(result.log)}
        summary = [line for line in result.lines("run summary: ")]
        if summary:
            figures["summary"] = json.loads(summary[-1].split("run summary: ", 1)[1])
        print(f"  dags test: {_brief(figures)}", flush=True)
        return figures

    def api_latency(self, location: str, queries: list[str], timeout: float) -> dict:
        """`/hn-ingest/api/status` and hybrid `/hn-ingest/api/search` through a real api-server on the store:
        the first request of each (opening, model warm-up), then the latency of `queries` requests each."""
        import requests

        from tests.airflow_cli import AirflowStack, simple_auth_settings

        self.env.extra_env.update({**simple_auth_settings(self.env.home, "reader", "viewer", "bench-password"),
                                   "AIRFLOW_CONN_MILVUS_DEFAULT": milvus_connection(location)})
        figures: dict = {}
        with AirflowStack(self.env, components=("api-server",)) as stack:
            base = stack.wait_for_api(timeout)
            headers = {"Authorization": f"Bearer {stack.login('reader', 'bench-password')}"}
            routes = {"status": lambda q: ("/hn-ingest/api/status", {}),
                      "search_hybrid": lambda q: ("/hn-ingest/api/search", {"q": q, "k": 5, "mode": "hybrid"})}
            for name, request in routes.items():
                runs, answer = [], {}
                for query in ["a first query", *queries]:
                    route, params = request(query)
                    started = time.perf_counter()
                    response = requests.get(base + route, params=params, headers=headers, timeout=timeout)
                    runs.append(time.perf_counter() - started)
                    if response.status_code != 200:
                        figures[name] = {"error": f"HTTP {response.status_code}: {response.text[:200]}"}
                        break
                    answer = response.json()
                else:
                    figures[name] = {"first": runs[0], "runs": runs[1:],
                                     "mode": answer.get("mode"), "notice": answer.get("notice")}
        print(f"  api: {_brief(figures)}", flush=True)
        return figures

    def close(self) -> None:
        pass


class RssTimeline(TaggedSampler):
    """VmRSS of every process tagged `HN_BENCH_TAG=<tag>` but the embedding service, every 0.5 s: the peak
    within each task's window of an `airflow dags test` log (its tasks may share one process, whose
    VmHWM would then only say the peak so far)."""

    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.samples: list[tuple[float, float]] = []  # (time, MB summed over the tagged processes)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            total = 0
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    if self.marker not in (proc / "environ").read_bytes().split(b"\0"):
                        continue
                    if b"include.embed.service" in (proc / "cmdline").read_bytes():
                        continue
                    total += next(int(line.split()[1]) for line in (proc / "status").read_text().splitlines()
                                  if line.startswith("VmRSS:"))
                except (OSError, StopIteration, ValueError):
                    continue
            self.samples.append((time.time(), total / 1024))

    def per_task(self, log: str) -> dict[str, int]:
        """Task id → the highest sample inside any of its instances' windows (MB)."""
        stamp = re.compile(r"^(\S+Z) .*\[DAG TEST\] (starting|end task) task_id=(\S+) map_index=(\S+)")
        opened: dict[tuple[str, str], float] = {}
        peaks: dict[str, int] = {}
        for line in log.splitlines():
            match = stamp.match(line)
            if not match:
                continue
            when = datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp()
            key = (match.group(3), match.group(4))
            if match.group(2) == "starting":
                opened[key] = when
            elif key in opened:
                start = opened.pop(key)
                inside = [mb for t, mb in self.samples if start - 0.5 <= t <= when + 0.5]
                peaks[key[0]] = max(peaks.get(key[0], 0), round(max(inside, default=0)))
        return peaks


# -- the table ----------------------------------------------------------------------------------------


def table_rows(columns: list[dict], seconds: float) -> list[tuple[str, str]]:
    def row(label: str, cell) -> tuple[str, str]:
        return label, " | ".join(f"{_cell(cell, c):>24}" for c in columns)

    rows = [row("store", lambda c: c["size"]), row("grown (seconds to grow)", lambda c: c["grown"]),
            row("load average before (1, 5, 15 min)", lambda c: c["load before"]),
            row("open + ensure_collections, cold (s)", lambda c: _open(c["open cold"])),
            row("open + ensure_collections, warm, min (s)", lambda c: _open(_fastest(c["open warm"]))),
            row("  of which load_collection(hn_chunks) (s)", lambda c: _load(_fastest(c["open warm"]))),
            row("  RSS after it / peak (MB), warm", lambda c: _rss(_fastest(c["open warm"]))),
            row("  close (s), warm", lambda c: _num(_fastest(c["open warm"]).get("close"))),
            row("include.ops.status: wall s", lambda c: _wall(c["status"])),
            row("  status peak RSS (MB)", lambda c: f"{c['status']['peak_mb']:.0f}"),
            row("include.ops.search --mode text: wall s", lambda c: _wall(c["search_cli"])),
            row("  search CLI peak RSS (MB)", lambda c: f"{c['search_cli']['peak_mb']:.0f}"),
            row("probe process: open + load s", lambda c: _num(c["probe"].get("ensure"))),
            ]
    for call in ("due_threads", "due_failed_ids", "states_10", "story_ids_with_status", "comment_hashes_10",
                 "count"):
        rows.append(row(f"ledger/reader {call}: first / min s", lambda c, call=call: _call(c["probe"], call)))
    for mode in ("dense", "text", "hybrid"):
        rows.append(row(f"search {mode}: first s; p50 / p95 ms (n)", lambda c, mode=mode: _search(c["probe"], mode)))
    rows += [row("probe process RSS peak (MB)", lambda c: _num(c["probe"].get("hwm_mb"), 0)),
             row("probe", lambda c: c["probe"].get("timeout") or c["probe"].get("error") or "complete"),
             row("API /status: first s; p50 / p95 ms (n)", lambda c: _latency(c.get("api"), "status")),
             row("API hybrid search: first s; p50 / p95 ms (n)", lambda c: _latency(c.get("api"), "search_hybrid")),
             row("dags test, 10 new stories: wall s", lambda c: _dag_wall(c.get("dag"))),
             row("  peak RSS, sum of processes (MB)", lambda c: _num((c.get("dag") or {}).get("peak_mb"), 0))]
    tasks = ("discover_stories", "extract_batch", "embed_batch", "write_batch", "report_run")
    for task in tasks:
        rows.append(row(f"  {task}: s / sampled RSS MB", lambda c, task=task: _task(c.get("dag"), task)))
    rows += [row("  largest processes (MB)", lambda c: ((c.get("dag") or {}).get("processes") or "-")[:24]),
             row("load average after", lambda c: c["load after"])]
    rows.append(("bench wall (s)", f"{seconds:.0f}"))
    return rows


def _cell(getter, column: dict) -> str:
    try:
        return str(getter(column))
    except (KeyError, TypeError, ValueError):
        return "-"


def _num(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fastest(runs: list[dict]) -> dict:
    done = [r for r in runs if "ensure" in r]
    return min(done, key=lambda r: r["open"] + r["ensure"]) if done else (runs[0] if runs else {})


def _open(run: dict) -> str:
    if "ensure" not in run:
        return run.get("timeout") or run.get("error") or "-"
    return f"{run['open'] + run['ensure']:.2f}"


def _load(run: dict) -> str:
    return f"{run['loads']['hn_chunks']:.2f}"


def _rss(run: dict) -> str:
    return f"{run['rss_mb']:.0f} / {run['hwm_mb']:.0f}"


def _wall(result: dict) -> str:
    return result.get("timeout") or result.get("error", "")[:24] or f"{result['wall']:.2f}"


def _call(probe: dict, call: str) -> str:
    found = probe.get("calls", {}).get(call)
    if not found:
        return "not reached" if "timeout" in probe else "-"
    return f"{found['first']:.3f} / {min(found['runs']):.3f}"


def _search(probe: dict, mode: str) -> str:
    found = probe.get("search", {}).get(mode)
    if not found:
        return "not reached" if "timeout" in probe else "-"
    return _percentiles(found)


def _latency(api: dict | None, route: str) -> str:
    found = (api or {}).get(route)
    if not found:
        return "-"
    if "error" in found:
        return found["error"][:24]
    return _percentiles(found) + (" dense" if found.get("mode") == "dense" else "")


def _percentiles(found: dict) -> str:
    runs = found["runs"]
    if len(runs) >= 2:
        cuts = quantiles(runs, n=20, method="inclusive")
        p50, p95 = cuts[9], cuts[18]
    else:
        p50 = p95 = runs[0] if runs else math.nan
    return f"{found['first']:.2f}; {p50 * 1000:.0f} / {p95 * 1000:.0f} ({len(runs)})"


def _dag_wall(dag: dict | None) -> str:
    if not dag:
        return "-"
    if "wall" not in dag:
        return dag.get("timeout") or dag.get("error", "-")
    return f"{dag['wall']:.1f}" + ("" if dag.get("succeeded") else " (failed)")


def _task(dag: dict | None, task: str) -> str:
    if not dag or "task_seconds" not in dag:
        return "-"
    return f"{dag['task_seconds'].get(task, 0):.1f} / {dag['task_peak_mb'].get(task, 0)}"


# -- the workers: each in its own process, figures on stdout as `@@ {json}` lines ------------------------


def emit(**figures) -> None:
    print(MARK + json.dumps(figures), flush=True)


def memory_mb() -> dict[str, float]:
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return {"rss_mb": values["VmRSS"], "hwm_mb": values["VmHWM"]}


def open_store(location: str):
    """Open and load as a task does; the seconds of each part."""
    started = time.perf_counter()
    import milvus_lite.adapter.grpc.server  # noqa: F401 - imported apart: the open is timed without imports
    import pymilvus  # noqa: F401

    from include.store import ChunkStore
    from include.store.client import open_client

    imports = time.perf_counter() - started
    started = time.perf_counter()
    client = open_client(location, lock_timeout=5)
    opened = time.perf_counter() - started
    loads: dict[str, float] = {}
    load_collection = client.load_collection

    def timed_load(name, *a, **k):
        begun = time.perf_counter()
        try:
            return load_collection(name, *a, **k)
        finally:
            loads[name] = loads.get(name, 0.0) + time.perf_counter() - begun

    client.load_collection = timed_load
    store = ChunkStore(client)
    started = time.perf_counter()
    store.schema.ensure_collections()
    return client, store, {"imports": imports, "open": opened, "ensure": time.perf_counter() - started,
                           "loads": loads}


def open_worker(location: str, spec: dict) -> None:
    from include.store.client import close_client

    client, _, figures = open_store(location)
    emit(**figures, **memory_mb())
    started = time.perf_counter()
    close_client(client, location)
    emit(close=time.perf_counter() - started)


def probe_worker(location: str, spec: dict) -> None:
    """The control path and searches on one open store."""
    from include.config import ThreadConfig
    from include.store.client import close_client
    from include.store.search import search

    client, store, figures = open_store(location)
    emit(ensure=figures["open"] + figures["ensure"], **memory_mb())
    present = store.ledger.states(spec["corpus_ids"])
    emit(present=sorted(present))
    now = time.time()
    rng = _random(spec["seed"], 1)
    some_ids = [BASE_STORY_ID + int(i) * STORY_STRIDE for i in rng.choice(spec["stories"], 10)]
    calls = {
        "due_threads": lambda: store.ledger.due_threads(ThreadConfig(), now, 20),
        "due_failed_ids": lambda: store.ledger.due_failed_ids(now),
        "states_10": lambda: store.ledger.states(some_ids),
        "story_ids_with_status": lambda: store.ledger.story_ids_with_status("ingested", "failed"),
        "comment_hashes_10": lambda: store.writer.comment_hashes(some_ids),
        "count": lambda: store.reader.count(),
    }
    timed: dict[str, dict] = {}
    for name, call in calls.items():
        runs, rows = [], None
        for attempt in range(max(1, spec["repeats"])):
            started = time.perf_counter()
            rows = call()
            runs.append(time.perf_counter() - started)
            if attempt == 0 and runs[0] > 60:
                break  # a pathological call is measured once
        timed[name] = {"first": runs[0], "runs": runs, "rows": rows if isinstance(rows, int) else len(rows)}
        emit(calls=timed, **memory_mb())
    queries = _queries(spec["queries"])
    results: dict[str, dict] = {}
    for mode in ("dense", "text", "hybrid"):
        if mode == "text" and not store.schema.has_full_text():
            continue  # a server before 2.5 refuses it (and answers hybrid with dense)
        started = time.perf_counter()
        search(store, "first query of this mode", k=5, mode=mode, embed_query=fixed_vector)
        first, runs = time.perf_counter() - started, []
        budget_end = time.perf_counter() + spec["search_budget"]
        for query in queries:
            started = time.perf_counter()
            search(store, query, k=5, mode=mode, embed_query=fixed_vector)
            runs.append(time.perf_counter() - started)
            if time.perf_counter() > budget_end:
                break
        results[mode] = {"first": first, "runs": runs}
        emit(search=results, **memory_mb())
    close_client(client, location)


def fixed_vector(query: str):
    """A unit vector fixed by the query's text: searches without the model, the same on every run."""
    import numpy as np

    vector = np.random.default_rng(zlib.crc32(query.encode())).standard_normal(384).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _queries(n: int) -> list[str]:
    from tests import corpus

    found = []
    for page in corpus.pages():
        sentence = corpus.middle_sentence(page.truth_text) if page.truth_text else None
        if sentence:
            found.append(sentence)
        if len(found) == n:
            break
    return found


def _random(seed: int, stream: int):
    import numpy as np

    return np.random.default_rng([seed, stream])


def grow_worker(location: str, spec: dict) -> None:
    """Create the collections through the project's schema and fill them with `spec`'s stories and chunks."""
    from include.config import CHUNKS_COLLECTION, STORIES_COLLECTION
    from include.store.client import close_client

    started = time.perf_counter()
    client, store, _ = open_store(location)
    if store.reader.count():  # a server's growth cut short: start again from empty collections
        for name in client.list_collections():
            client.drop_collection(name)
        store.schema.ensure_collections()
    generator = SyntheticStore(spec["stories"], spec["chunks"], spec["seed"])
    expected = {name: set(store.schema.stored_fields(name)) for name in (CHUNKS_COLLECTION, STORIES_COLLECTION)}
    written = {CHUNKS_COLLECTION: 0, STORIES_COLLECTION: 0}
    for name, rows in generator.batches():
        if set(rows[0]) != expected[name]:
            raise SystemExit(f"{name} rows have fields {sorted(set(rows[0]) ^ expected[name])} unlike the schema")
        client.insert(name, rows)
        written[name] += len(rows)
        if written[CHUNKS_COLLECTION] % 50_000 < len(rows) and name == CHUNKS_COLLECTION:
            print(f"{written} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    close_client(client, location)  # flushes: the memtable becomes segments, their indexes are built
    client, store, _ = open_store(location)  # a first open builds what the flush left (so a measured open does not)
    counted = {"chunks": store.reader.count(), "stories": len(store.ledger.story_rows())}
    close_client(client, location)
    emit(done={"seconds": time.perf_counter() - started, **counted, "written": written,
               "states": generator.state_counts})


class SyntheticStore:
    """A month of stories and their chunks, as the pipeline would have stored them."""

    STATES = (("ingested", 0.85), ("skipped", 0.08), ("failed", 0.05), ("removed", 0.02))

    def __init__(self, stories: int, chunks: int, seed: int) -> None:
        import numpy as np

        from include.config import ChunkConfig, EmbeddingConfig, ThreadConfig, pipeline_fingerprint
        from tests import corpus

        self.rng = _random(seed, 0)
        self.now = int(time.time())
        self.fingerprint = pipeline_fingerprint(EmbeddingConfig().model_name, ChunkConfig())
        self.steps = len(ThreadConfig().refresh_after)
        pages = corpus.pages()
        self.words = [w for p in pages if p.truth_text for w in p.truth_text.split()]
        self.domains = sorted({d for d in (_host(p.original_url) for p in pages) if d})
        self.authors = [w.lower() for w in dict.fromkeys(self.words[:20_000]) if w.isalpha()][:3000]
        draw = self.rng.random(stories)
        bounds = np.cumsum([share for _, share in self.STATES])
        self.status = [self.STATES[int(np.searchsorted(bounds, x, side="right"))][0] for x in draw]
        if stories:
            self.status[0] = "ingested"  # at least one story holds the chunks
        ingested = [i for i, s in enumerate(self.status) if s == "ingested"]
        weights = self.rng.lognormal(0.0, 0.8, len(ingested))
        counts = np.maximum(1, np.floor(weights / weights.sum() * chunks)).astype(int)
        for k in range(int(chunks - counts.sum())):  # rounding: the rest one by one
            counts[k % len(counts)] += 1
        while counts.sum() > chunks:
            counts[int(np.argmax(counts))] -= 1
        self.chunk_counts = dict(zip(ingested, counts.tolist(), strict=True))
        self.posted = sorted(self.rng.integers(self.now - 30 * DAY, self.now - 600, stories).tolist())
        self.state_counts = {s: self.status.count(s) for s, _ in self.STATES}

    def batches(self):
        """(collection, rows) in insert-sized batches: stories 5,000 at a time, chunks 2,000."""
        from include.config import CHUNKS_COLLECTION, STORIES_COLLECTION

        stories, chunks = [], []
        for i in range(len(self.status)):
            story, story_chunks = self.story(i)
            stories.append(story)
            chunks.extend(story_chunks)
            if len(stories) >= 5_000:
                yield STORIES_COLLECTION, stories
                stories = []
            while len(chunks) >= 2_000:
                yield CHUNKS_COLLECTION, chunks[:2_000]
                chunks = chunks[2_000:]
        if stories:
            yield STORIES_COLLECTION, stories
        if chunks:
            yield CHUNKS_COLLECTION, chunks

    def story(self, i: int) -> tuple[dict, list[dict]]:
        from include.store.schema import with_new_fields

        story_id = BASE_STORY_ID + i * STORY_STRIDE
        status, posted = self.status[i], self.posted[i]
        rng = self.rng
        domain = self.domains[int(rng.zipf(1.6)) % len(self.domains)]
        title = " ".join(self._words(int(rng.integers(4, 11)))).capitalize()[:200]
        url = f"https://{domain}/{re.sub(r'[^a-z0-9]+', '-', ' '.join(self._words(3)).lower())[:60]}-{i}"
        points, comments = int(rng.zipf(1.8)) % 2000, int(rng.zipf(1.7)) % 800
        total = self.chunk_counts.get(i, 0)
        in_comments = min(MAX_COMMENT_CHUNKS, int(total * 0.4)) if comments else 0
        row = {"story_id": story_id, "status": status, "stage": "", "reason": "", "attempts": 0,
               "chunk_count": total - in_comments, "title": title, "url": url, "updated_at": posted + 300,
               "next_attempt_at": 0, "etag": "", "last_modified": "", "fingerprint": "", "posted_at": posted,
               "points": points, "comments": comments, "thread_read_at": 0, "thread_steps": 0, "comment_chunks": 0,
               "item_hash": f"{int(rng.integers(1 << 62)):032x}"[:32], "unused_vector": [0.0, 0.0]}
        if status == "ingested":
            # Every refresh step done: no synthetic thread is ever due (the replay does not know these stories).
            row.update(etag=f'"{int(rng.integers(1 << 62)):x}"', last_modified="Tue, 29 Dec 2020 22:46:40 GMT",
                       fingerprint=self.fingerprint, thread_read_at=posted + 3 * DAY, thread_steps=self.steps,
                       comment_chunks=in_comments)
        elif status == "skipped":
            row.update(stage="robots", reason=f"story {story_id} {url}: robots.txt disallows /{i}")
        elif status == "failed":
            attempts = int(rng.integers(1, 6))
            # Out of attempts (0), or waiting far ahead: never due, so a DAG run leaves them alone.
            row.update(stage="fetch", reason=f"story {story_id} fetch {url}: HTTP 503 Service Unavailable",
                       attempts=attempts, next_attempt_at=0 if attempts == 5 else self.now + 365 * DAY)
        else:
            row.update(stage="lifecycle", reason=f"story {story_id}: dead (killed or flagged) on Hacker News")
        row = with_new_fields("hn_stories", row)
        return row, self.chunks(story_id, title, url, posted, points, comments, total, in_comments)

    def chunks(self, story_id, title, url, posted, points, comments, total, in_comments) -> list[dict]:
        import numpy as np

        from include.records import Chunk
        from include.store.chunk_writer import _chunk_row

        if not total:
            return []
        vectors = self.rng.standard_normal((total, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        pages = total - in_comments
        records = [Chunk(story_id, k, title, url, self._text(), posted, points, comments) for k in range(pages)]
        for k in range(in_comments):
            comment_id = story_id + 1 + k
            author, parent = self.authors[(story_id + k) % len(self.authors)], self.authors[k % len(self.authors)]
            text = f'Comment by {author}, replying to {parent}: "{" ".join(self._words(8))}…" {self._text()[:700]}'
            records.append(Chunk(story_id, 0, title, f"https://news.ycombinator.com/item?id={comment_id}", text,
                                 posted + 60 * (k + 1), points, comments, "comment", comment_id, author,
                                 f"/{story_id + 1}/{comment_id}" if k else f"/{comment_id}",
                                 f"{zlib.crc32(text.encode()):08x}" * 4))
        rows = [_chunk_row(c, v, {}, posted + 120) for c, v in zip(records, vectors, strict=True)]
        return rows

    def _words(self, n: int) -> list[str]:
        start = int(self.rng.integers(0, len(self.words) - n))
        return self.words[start : start + n]

    def _text(self) -> str:
        return " ".join(self._words(int(self.rng.integers(90, 170))))[:1000]


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "").removeprefix("www.")


WORKERS = {"grow": grow_worker, "open": open_worker, "probe": probe_worker}


if __name__ == "__main__":
    main()
