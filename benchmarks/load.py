"""Load test: many publishing sessions at once, http-post-bytes and resumable mixed.

    .venv/bin/python benchmarks/load.py                             # 50 sessions × 5 files × 10 MiB, SQLite
    .venv/bin/python benchmarks/load.py --database-url postgresql://postgres@127.0.0.1:5432/postgres \\
        --broker-url redis://127.0.0.1:6379/14                      # PostgreSQL, verification in a Celery worker
    .venv/bin/python benchmarks/load.py --sessions 4 --files 2 --size-kib 64 --json

Starts a fresh server (gunicorn, 2 workers × 4 threads, as docs/deployment.md runs it; or
waitress, `make serve`'s) on a fresh database, and a Celery worker with --broker-url. Then
``--sessions`` clients at once each run one release through the 2.0 API: create a session,
create ``--files`` file upload sessions, upload each (alternately POST bytes and resumable
appends), complete each (polling while a worker verifies), publish. Every request is timed.

It then checks what a load must not break: no 5xx, no "database is locked" in any answer or
in the server's log, every file listed by ``/simple/`` and downloaded through it with the
sha256 it was uploaded with, storage holding exactly the published files (no orphan blob),
and no live file upload session or name reservation left (no orphan row). It reports the
throughput and each step's p50/p95/p99 as a table, and as JSON (``--json``: on stdout;
always to the ``--output`` file).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import hashlib
import json
import math
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time

import httpx
from rich.table import Table

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import resumable as bench_resumable  # its Celery worker and chunk reader
import upload as common  # servers, databases, users

from tests.artifacts import build_wheel, sha256_file

KiB, MiB = 1024, common.MiB
RESUMABLE = bench_resumable.RESUMABLE
STEPS = ("create session", "create file", "upload", "complete", "publish")
console = common.console


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=50, help="publishing sessions, all at once (default: 50)")
    p.add_argument("--files", type=int, default=5, help="files per session (default: 5)")
    p.add_argument("--size-kib", type=int, default=10 * 1024, help="each file's size in KiB (default: 10240)")
    p.add_argument("--clients", type=int, help="concurrent clients (default: one per session)")
    p.add_argument("--projects", type=int, default=5,
                   help="sessions are spread over this many new project names (default: 5)")
    p.add_argument("--resumable", type=float, default=0.5,
                   help="share of files uploaded with resumable appends (default: 0.5)")
    p.add_argument("--chunk-mib", type=int, default=4, help="resumable append size in MiB (default: 4)")
    p.add_argument("--server", choices=["gunicorn", "waitress"], default="gunicorn")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default: 2)")
    p.add_argument("--threads", type=int, default=4, help="threads per gthread worker (default: 4)")
    p.add_argument("--database-url", help="a PostgreSQL server URL (default: a fresh SQLite file)")
    p.add_argument("--broker-url", help="a Redis URL: a Celery worker verifies resumable uploads "
                                        "(default: eager, in the web process); the Redis database is flushed")
    p.add_argument("--no-verify", action="store_true", help="skip downloading every file through /simple/")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout, not as a table")
    p.add_argument("--tmpdir", help="where wheels, databases and stored files go (default: the system's)")
    p.add_argument("--output", type=pathlib.Path, help="JSON result file (default: benchmarks/results/load-...)")
    args = p.parse_args(argv)
    args.clients = args.clients or args.sessions
    args.worker_class, args.gunicorn_tunables = "gthread", common.GUNICORN_TUNABLES
    args.chunk = args.chunk_mib  # what resumable.write_ini reads
    return args


# -- the server ----------------------------------------------------------------------------------

LOGGING = """
[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARNING
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic
[formatter_generic]
format = %(asctime)s %(levelname)s [%(name)s] %(message)s
"""


def write_ini(workdir: pathlib.Path, database_url: str, port: int, max_bytes: int, args) -> pathlib.Path:
    """resumable.py's ini, with warnings and tracebacks logged to the server's output."""
    ini = bench_resumable.write_ini(workdir, database_url, port, max_bytes, args)
    ini.write_text(ini.read_text() + LOGGING)
    return ini


# -- one client's release ---------------------------------------------------------------------

class Recorder:
    """Each request's step, seconds and status, from every client thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.samples: list[tuple[str, float, int]] = []
        self.errors: list[str] = []
        self.client_cpu_s = 0.0  # the client process's CPU over the run (all its threads)

    def timed(self, step: str, send, *expected: int) -> httpx.Response:
        start = time.perf_counter()
        response = send()
        seconds = time.perf_counter() - start
        with self.lock:
            self.samples.append((step, seconds, response.status_code))
            if response.status_code >= 500 or "database is locked" in response.text:
                self.errors.append(f"{step}: {response.status_code} {response.text[:300]}")
        if response.status_code not in expected:
            raise RuntimeError(f"{step}: {response.status_code} (expected {expected}): {response.text[:300]}")
        return response


def post_json(client: httpx.Client, url: str, body: dict | None = None):
    return lambda: client.post(url, content=json.dumps({"meta": common.META, **(body or {})}),
                               headers={"Content-Type": common.CT})


def wait_settled(client: httpx.Client, url: str, timeout: float = 300) -> str:
    """Poll a file or session while a task processes it; its final status."""
    deadline = time.monotonic() + timeout
    while (status := client.get(url).json()["status"]) == "processing":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} still processing after {timeout} s")
        time.sleep(0.02)
    return status


def upload_file(client, rec: Recorder, upload: dict, path: pathlib.Path, chunk: int) -> None:
    size = path.stat().st_size
    url = upload["mechanism"]["file_url"]
    if upload["mechanism"]["identifier"] == "http-post-bytes":
        rec.timed("upload", lambda: client.post(url, content=bench_resumable.chunks(path, MiB), headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(size)}), 204)
        return
    for offset in range(0, size, chunk):
        end = min(size, offset + chunk)
        rec.timed("upload", lambda offset=offset, end=end: client.patch(url, content=bench_resumable.chunks(
            path, MiB, offset, end), headers={
                "Content-Type": "application/partial-upload", "Upload-Offset": str(offset),
                "Content-Length": str(end - offset), "Upload-Complete": "?1" if end == size else "?0"}), 204)


def release(client: httpx.Client, base: str, job: dict, rec: Recorder, chunk: int) -> None:
    """One release through the five steps; resumable files may come back 202 and be polled."""
    session = rec.timed("create session", post_json(client, base + "/2.0/", {
        "name": job["project"], "version": job["version"]}), 201).json()
    for path, mechanism in job["files"]:
        upload = rec.timed("create file", post_json(client, session["links"]["upload"], {
            "filename": path.name, "size": path.stat().st_size, "hashes": {"sha256": job["sha256"]},
            "mechanism": mechanism}), 202).json()
        upload_file(client, rec, upload, path, chunk)
        done = rec.timed("complete", post_json(client, upload["links"]["complete"]), 201, 202)
        if done.status_code == 202 and wait_settled(client, upload["links"]["file-upload-session"]) != "completed":
            raise RuntimeError(f"{path.name} did not complete")
    published = rec.timed("publish", post_json(client, session["links"]["publish"]), 201, 202)
    if published.status_code == 202 and wait_settled(client, session["links"]["session"]) != "published":
        raise RuntimeError(f"{job['project']} {job['version']} did not publish")


def jobs(workdir: pathlib.Path, args) -> list[dict]:
    """Per session: its project and version, a wheel and ``--files`` names of it (hard links
    differing in the Python tag), each with the mechanism it is uploaded with."""
    out, n_files = [], 0
    for i in range(args.sessions):
        project, version = f"load{i % args.projects}", f"1.{i}"
        wheel = build_wheel(workdir, project, version, padding=args.size_kib * KiB)
        files = []
        for path in common.variants(wheel, args.files):
            # Spread resumable files evenly: file k is resumable when the running share falls short.
            resumable = int((n_files + 1) * args.resumable) > int(n_files * args.resumable)
            files.append((path, RESUMABLE if resumable else "http-post-bytes"))
            n_files += 1
        out.append({"project": project, "version": version, "files": files, "sha256": sha256_file(wheel)})
    return out


# -- the checks after the load -------------------------------------------------------------------

def verify_index(base: str, work: list[dict]) -> list[str]:
    """Every file listed by /simple/ and downloaded through it with its sha256."""
    problems, expected = [], {}
    for job in work:
        for path, _ in job["files"]:
            expected[path.name] = (job["project"], job["sha256"])

    def check(project: str) -> list[str]:
        found = []
        with httpx.Client(timeout=600) as client:
            page = client.get(f"{base}/simple/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
            listed = {f["filename"]: f for f in page.json()["files"]}
            for name, (owner, digest) in expected.items():
                if owner != project:
                    continue
                if name not in listed:
                    found.append(f"{name}: not listed")
                    continue
                sha = hashlib.sha256()
                with client.stream("GET", httpx.URL(page.url).join(listed[name]["url"])) as response:
                    for chunk in response.iter_bytes(MiB):
                        sha.update(chunk)
                if response.status_code != 200 or sha.hexdigest() != digest or listed[name]["hashes"]["sha256"] != digest:
                    found.append(f"{name}: {response.status_code}, downloaded sha256 {sha.hexdigest()}")
        return found

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for found in pool.map(check, sorted({p for p, _ in expected.values()})):
            problems += found
    return problems


def orphans(database_url: str, storage: pathlib.Path) -> dict:
    """Rows and blobs a finished load must not leave: live sessions, reservations, stored files
    that are not published files."""
    import sqlalchemy as sa

    from pypi_upload2.db import normalize_url

    engine = sa.create_engine(normalize_url(database_url))
    with engine.connect() as conn:
        published = conn.execute(sa.text(
            "SELECT blob_key, metadata_sha256 FROM upload2_release_files")).all()
        # A published session's files stay ``completed`` until status retention purges them.
        live_files = conn.scalar(sa.text(
            "SELECT count(*) FROM upload2_file_upload_sessions WHERE status <> 'completed'"))
        live_sessions = conn.scalar(sa.text(
            "SELECT count(*) FROM upload2_publishing_sessions WHERE status <> 'published'"))
        reservations = conn.scalar(sa.text("SELECT count(*) FROM upload2_name_reservations"))
        filenames = conn.scalar(sa.text("SELECT count(*) FROM upload2_filenames WHERE filename NOT IN "
                                        "(SELECT filename FROM upload2_release_files)"))
    engine.dispose()
    wanted = {key for key, _ in published} | {key + ".metadata" for key, meta in published if meta}
    stored = {str(p.relative_to(storage)) for p in storage.rglob("*") if p.is_file()}
    return {"published_files": len(published), "unfinished_file_sessions": live_files,
            "unpublished_sessions": live_sessions, "name_reservations": reservations,
            "unpublished_filename_reservations": filenames,
            "orphan_blobs": sorted(stored - wanted)[:20], "missing_blobs": sorted(wanted - stored)[:20]}


# -- figures ---------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a p99 is a request that happened)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def step_figures(samples: list[tuple[str, float, int]]) -> dict:
    figures = {}
    for step in STEPS:
        seconds = [s for name, s, _ in samples if name == step]
        if seconds:
            figures[step] = {"requests": len(seconds), **{
                f"p{q}_ms": percentile(seconds, q) * 1000 for q in (50, 95, 99)}, "max_ms": max(seconds) * 1000}
    return figures


def steps_table(title: str, figures: dict) -> Table:
    table = Table(title=title)
    for column in ("step", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms", "p95 / p50"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for step, f in figures.items():
        table.add_row(step, str(f["requests"]), f"{f['p50_ms']:.1f}", f"{f['p95_ms']:.1f}", f"{f['p99_ms']:.1f}",
                      f"{f['max_ms']:.1f}", f"{f['p95_ms'] / f['p50_ms']:.1f}")
    return table


# -- the run --------------------------------------------------------------------------------------

def run_load(base: str, token: str, work: list[dict], clients: int, chunk: int) -> tuple[Recorder, float, list[str]]:
    """Every job at once (``clients`` at a time); the recorder, wall seconds and failures."""
    rec, failures, local, opened = Recorder(), [], threading.local(), []

    def one(job):
        # A client per thread, kept: making an httpx client costs about 20 ms of CPU (its TLS
        # context), which would otherwise be the benchmark's limit, not the server.
        if not hasattr(local, "client"):
            local.client = httpx.Client(auth=("__token__", token), timeout=httpx.Timeout(600))
            opened.append(local.client)
        release(local.client, base, job, rec, chunk)

    start, cpu = time.perf_counter(), time.process_time()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(one, job) for job in work]:
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001  (counted and reported, the others go on)
                failures.append(str(exc)[:300])
    rec.client_cpu_s = time.process_time() - cpu
    for client in opened:
        client.close()
    return rec, time.perf_counter() - start, failures


def measure(args, workdir: pathlib.Path) -> dict:
    with console.status(f"building {args.sessions} wheels of {args.size_kib} KiB"):
        work = jobs(workdir, args)
    size = work[0]["files"][0][0].stat().st_size
    port = common.free_port()
    with common.fresh_database(workdir, args.database_url) as url:
        ini = write_ini(workdir, url, port, size + MiB, args)
        token = common.create_user(ini)
        with common.server_process(args.server, ini, port, args, workdir) as (proc, base), \
                bench_resumable.celery_worker(ini, workdir, args.broker_url):
            before = common.counters(proc.pid)
            with console.status(f"{args.sessions} sessions, {args.clients} at a time"):
                rec, wall, failures = run_load(base, token, work, args.clients, args.chunk_mib * MiB)
            used = {k: v - before[k] for k, v in common.counters(proc.pid).items()}
            with console.status("downloading every file through /simple/"):
                bad = [] if args.no_verify else verify_index(base, work)
        log = (workdir / f"{args.server}.log").read_text(errors="replace")
        left = orphans(url, workdir / "files")
    n_files = sum(len(j["files"]) for j in work)
    published = args.sessions - len(failures)
    return {
        "sessions": args.sessions, "files": n_files, "file_bytes": size, "wall_s": wall,
        "releases_per_s": published / wall, "files_per_s": n_files / wall, "mib_per_s": n_files * size / MiB / wall,
        "steps": step_figures(rec.samples),
        "statuses": {str(s): sum(1 for *_, c in rec.samples if c == s) for s in sorted({c for *_, c in rec.samples})},
        "server_errors": rec.errors[:20], "failures": failures[:20], "download_problems": bad[:20],
        "client_cpu_s": rec.client_cpu_s, "log_database_locked": log.count("database is locked"), "log_tracebacks": log.count("Traceback"),
        **left, **used,
    }


def problems(result: dict, verified: bool = True) -> list[str]:
    """What the load broke, as sentences; empty when every check passed."""
    found = []
    if result["server_errors"]:
        found.append(f"{len(result['server_errors'])} 5xx or 'database is locked' answers")
    if result["failures"]:
        found.append(f"{len(result['failures'])} releases failed: {result['failures'][0]}")
    if result["log_database_locked"] or result["log_tracebacks"]:
        found.append(f"server log: {result['log_database_locked']} 'database is locked', "
                     f"{result['log_tracebacks']} tracebacks")
    if verified and result["download_problems"]:
        found.append(f"downloads: {result['download_problems'][0]}")
    if result["orphan_blobs"] or result["missing_blobs"]:
        found.append(f"storage: orphans {result['orphan_blobs'][:3]}, missing {result['missing_blobs'][:3]}")
    for key in ("unfinished_file_sessions", "unpublished_sessions", "name_reservations",
                "unpublished_filename_reservations"):
        if result[key]:
            found.append(f"{result[key]} {key.replace('_', ' ')} left")
    if result["published_files"] != result["files"] and not result["failures"]:
        found.append(f"{result['published_files']} files published of {result['files']}")
    return found


def mode(args) -> str:
    return (f"{args.server}{f' {args.workers}×{args.threads}' if args.server == 'gunicorn' else ''}, "
            f"{'PostgreSQL' if args.database_url else 'SQLite'}, "
            f"{'Celery worker' if args.broker_url else 'eager tasks'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    output = args.output or common.ROOT / "benchmarks" / "results" / (
        "load-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
    load_before = os.getloadavg()  # a shared machine slows everything down: say how loaded it was
    with tempfile.TemporaryDirectory(prefix="upload2-load-", dir=args.tmpdir) as workdir:
        result = measure(args, pathlib.Path(workdir))
    found = problems(result, not args.no_verify)
    document = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable, common.ROOT), *sys.argv]),
        "machine": {**common.machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "mode": mode(args),
        "options": {k: v for k, v in vars(args).items() if k not in ("output", "json", "tmpdir")},
        "result": result, "problems": found,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if args.json:
        print(json.dumps(document, indent=2, default=str))
        return 1 if found else 0
    console.print(steps_table(f"Load: {args.sessions} sessions × {args.files} files × {args.size_kib} KiB, "
                              f"{args.clients} clients ({mode(args)})", result["steps"]))
    console.print(f"{result['releases_per_s']:.2f} releases/s, {result['files_per_s']:.1f} files/s, "
                  f"{result['mib_per_s']:.0f} MiB/s in {result['wall_s']:.1f} s; statuses {result['statuses']}")
    console.print("[green]every check passed[/]" if not found else "[red]" + "; ".join(found) + "[/]")
    console.print(f"results: {os.path.relpath(output)}")
    return 1 if found else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
