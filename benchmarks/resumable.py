"""Resumable uploads against http-post-bytes, measured in the same run on the same server.

    .venv/bin/python benchmarks/resumable.py                      # 64 and 256 MiB, 8 MiB chunks
    .venv/bin/python benchmarks/resumable.py --server gunicorn --database-url postgresql://postgres@127.0.0.1/postgres \\
        --broker-url redis://127.0.0.1:6379/14                    # verification in a Celery worker

For each size it builds a real wheel, starts a fresh server on a fresh database (and, with
--broker-url, a Celery worker), then per run uploads the wheel once with http-post-bytes
(POST the bytes, complete: 201) and once with vnd-upload2-resumable-v1 (PATCH chunk after
chunk, complete: 202, poll until the task completed it). Both figures count from the first
byte sent to the file being completed, verification included; before each, the page
allocator is primed as in benchmarks/upload.py (--cold skips it). Targets (docs/resumable.md):
resumable at least 0.6 of http-post-bytes, and the server's peak RSS flat with file size.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import upload as common  # noqa: E402  (benchmarks/upload.py: servers, databases, memory)
from tests.artifacts import build_wheel, sha256_file  # noqa: E402

MiB = common.MiB
RATIO = 0.6  # resumable throughput over http-post-bytes
RSS_GROWTH_MIB = common.RSS_GROWTH_MIB
RESUMABLE = "vnd-upload2-resumable-v1"
console = Console(width=None if sys.stdout.isatty() else 120)


def arguments(description: str) -> argparse.ArgumentParser:
    """The options of this benchmark that benchmarks/s3.py has too."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="64,256", help="wheel sizes in MiB, comma-separated (default: 64,256)")
    p.add_argument("--chunk", type=int, default=8, help="resumable append size in MiB (default: 8)")
    p.add_argument("--runs", type=int, default=3, help="uploads per mechanism and size; the best counts (default: 3)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default: 2)")
    p.add_argument("--database-url", help="a PostgreSQL server URL (default: a fresh SQLite file)")
    p.add_argument("--broker-url", help="a Redis URL: verification runs in a Celery worker (default: eager, "
                                        "in the web process); the Redis database is flushed")
    p.add_argument("--cold", action="store_true",
                   help="do not prime the page allocator before each timed upload (see upload.prime())")
    p.add_argument("--tmpdir", help="where wheels, databases and stored files go (default: the system's)")
    p.add_argument("--output", type=pathlib.Path, help="JSON result file (default: benchmarks/results/...)")
    return p


def sizes(args: argparse.Namespace) -> argparse.Namespace:
    args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    return args


def parse_args(argv=None) -> argparse.Namespace:
    p = arguments(__doc__)
    p.add_argument("--server", choices=["waitress", "gunicorn"], default="waitress",
                   help="waitress is `make serve`'s (default); gunicorn streams bodies to the app")
    p.add_argument("--worker-class", choices=["sync", "gthread"], default="gthread",
                   help="gunicorn worker class (default: gthread, as docs/deployment.md runs it)")
    args = sizes(p.parse_args(argv))
    args.threads = 4  # what common.server_process reads for gthread
    return args


def write_ini(workdir: pathlib.Path, database_url: str, port: int, max_bytes: int, args) -> pathlib.Path:
    ini = workdir / "bench.ini"
    broker = f"celery.broker_url = {args.broker_url}\n" if args.broker_url else ""
    ini.write_text(
        "[app:main]\nuse = egg:pypi-upload2\n"
        f"sqlalchemy.url = {database_url.replace('%', '%%')}\nupload2.storage = {workdir / 'files'}\n"
        f"upload2.max_file_size = {max_bytes}\nupload2.max_append_size = {args.chunk * MiB}\n{broker}\n"
        f"[server:main]\nuse = egg:waitress#main\nlisten = 127.0.0.1:{port}\n"
        f"max_request_body_size = {max_bytes + MiB}\n")
    return ini


@contextlib.contextmanager
def celery_worker(ini: pathlib.Path, workdir: pathlib.Path, broker_url: str | None):
    if not broker_url:
        yield None
        return
    import redis

    redis.Redis.from_url(broker_url).flushdb()
    log = workdir / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(common.BIN / "celery"), "-A", "pypi_upload2.tasks", "worker", "--concurrency", "2",
                                 "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
                                env={**os.environ, "UPLOAD2_CONFIG": str(ini)}, stdout=out, stderr=subprocess.STDOUT,
                                cwd=workdir, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def chunks(path: pathlib.Path, size: int, start: int = 0, end: int | None = None):
    """The bytes of ``path`` from ``start`` to ``end`` in pieces of ``size``, read as they are sent."""
    with open(path, "rb") as fh:
        fh.seek(start)
        remaining = (end if end is not None else path.stat().st_size) - start
        while remaining > 0 and (chunk := fh.read(min(size, remaining))):
            remaining -= len(chunk)
            yield chunk


def new_file(client, session: dict, wheel: pathlib.Path, digest: str, mechanism: str) -> dict:
    return common.call(client, session["links"]["upload"], {
        "filename": wheel.name, "size": wheel.stat().st_size, "hashes": {"sha256": digest},
        "mechanism": mechanism}, 202).json()


def post_bytes(client, session, wheel, digest) -> tuple[float, float]:
    """Seconds from the first byte to completed, and of those the complete request."""
    upload = new_file(client, session, wheel, digest, "http-post-bytes")
    start = time.perf_counter()
    sent = client.post(upload["mechanism"]["file_url"], content=chunks(wheel, MiB), headers={
        "Content-Type": "application/octet-stream", "Content-Length": str(wheel.stat().st_size)})
    if sent.status_code != 204:
        raise RuntimeError(f"POST bytes: {sent.status_code}: {sent.text[:500]}")
    transferred = time.perf_counter()
    common.call(client, upload["links"]["complete"], None, 201)
    done = time.perf_counter()
    return done - start, done - transferred


def resumable(client, session, wheel, digest, chunk: int) -> tuple[float, float]:
    """Seconds from the first byte to completed, and of those the verification (202 to completed)."""
    upload = new_file(client, session, wheel, digest, RESUMABLE)
    size, offset = wheel.stat().st_size, 0
    start = time.perf_counter()
    while offset < size:
        # Each append streams its range from the file, as the release client does.
        end = min(size, offset + chunk)
        response = client.patch(upload["mechanism"]["file_url"], content=chunks(wheel, MiB, offset, end), headers={
            "Content-Type": "application/partial-upload", "Upload-Offset": str(offset),
            "Content-Length": str(end - offset), "Upload-Complete": "?1" if end == size else "?0"})
        if response.status_code != 204:
            raise RuntimeError(f"PATCH at {offset}: {response.status_code}: {response.text[:500]}")
        offset = end
    transferred = time.perf_counter()
    common.call(client, upload["links"]["complete"], None, 202)
    while (status := client.get(upload["links"]["file-upload-session"]).json()["status"]) == "processing":
        time.sleep(0.02)  # finer than Retry-After: the benchmark wants the moment it completes
    done = time.perf_counter()
    if status != "completed":
        raise RuntimeError(f"the resumable upload ended {status}")
    return done - start, done - transferred


def measure(size_mib: int, wheel: pathlib.Path, args, workdir: pathlib.Path) -> dict:
    digest = sha256_file(wheel)
    size = wheel.stat().st_size
    with tempfile.TemporaryDirectory(prefix=f"resumable-{size_mib}-", dir=workdir) as tmp:
        tmp = pathlib.Path(tmp)
        port = common.free_port()
        with common.fresh_database(tmp, args.database_url) as url:
            ini = write_ini(tmp, url, port, size + MiB, args)
            token = common.create_user(ini)
            with common.server_process(args.server, ini, port, args, tmp) as (proc, base), \
                    celery_worker(ini, tmp, args.broker_url) as worker, \
                    httpx.Client(auth=("__token__", token), timeout=httpx.Timeout(900)) as client:
                sampler = common.MemorySampler(proc.pid)
                sampler.start()
                worker_sampler = common.MemorySampler(worker.pid) if worker else None
                if worker_sampler:
                    worker_sampler.start()
                try:
                    # One session holds every upload: each file has a name of its own.
                    session = common.call(client, base + "/2.0/", {"name": common.PROJECT, "version": f"{size_mib}.0"},
                                          201).json()
                    post_s, resumable_s, verify_s = [], [], []
                    for n, path in enumerate(common.variants(wheel, 2 * args.runs)):
                        if not args.cold:  # the same start for both: freshly freed pages (upload.prime())
                            common.prime(tmp, 2 * size)
                        if n % 2 == 0:
                            post_s.append(post_bytes(client, session, path, digest)[0])
                        else:
                            total, verify = resumable(client, session, path, digest, args.chunk * MiB)
                            resumable_s.append(total)
                            verify_s.append(verify)
                finally:
                    memory = sampler.stop()
                    if worker_sampler:
                        memory["peak_worker_mib"] = worker_sampler.stop()["peak_process_mib"]
    best_post, best_resumable = min(post_s), min(resumable_s)
    return {"post_mib_s": size / MiB / best_post, "resumable_mib_s": size / MiB / best_resumable,
            "ratio": best_post / best_resumable, "verify_s": verify_s[resumable_s.index(best_resumable)],
            "post_s": post_s, "resumable_s": resumable_s, **memory}


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    output = common.output_path(args, "resumable")
    results = {}
    with tempfile.TemporaryDirectory(prefix="upload2-resumable-", dir=args.tmpdir) as workdir:
        workdir = pathlib.Path(workdir)
        for s in args.sizes:
            with console.status(f"{s} MiB: building the wheel, then {args.runs} uploads per mechanism"):
                wheel = build_wheel(workdir, common.PROJECT, f"{s}.0", padding=s * MiB)
                results[s] = r = measure(s, wheel, args, workdir)
            console.print(f"{s} MiB: http-post-bytes {r['post_mib_s']:.0f} MiB/s, resumable {r['resumable_mib_s']:.0f} "
                          f"MiB/s ({r['ratio']:.2f}), verification {r['verify_s']:.2f} s, peak RSS "
                          f"{r['peak_process_mib']:.0f} MiB (worker {r.get('peak_worker_mib', 0):.0f} MiB)")
    small, large = args.sizes[0], args.sizes[-1]
    # The peak of any one process: a web server's, or a Celery worker's (which verifies).
    peak = {s: max(r["peak_process_mib"], r.get("peak_worker_mib", 0)) for s, r in results.items()}
    growth = peak[large] - peak[small]
    verdict = {"ratio": min(r["ratio"] for r in results.values()) >= RATIO,
               "rss_growth_mib": growth, "rss": growth < RSS_GROWTH_MIB}
    mode = f"{args.server}, {'PostgreSQL' if args.database_url else 'SQLite'}, " + (
        "Celery worker" if args.broker_url else "eager tasks")
    table = Table(title=f"Resumable ({args.chunk} MiB chunks) vs http-post-bytes: first byte to completed ({mode})")
    for column in ("size", "post-bytes MiB/s", "resumable MiB/s", "ratio", "verification s", "peak RSS MiB"):
        table.add_column(column, justify="right")
    for s, r in results.items():
        table.add_row(f"{s} MiB", f"{r['post_mib_s']:.0f}", f"{r['resumable_mib_s']:.0f}", f"{r['ratio']:.2f}",
                      f"{r['verify_s']:.2f}", f"{peak[s]:.0f}")
    console.print(table)
    console.print(f"resumable ≥ {RATIO} × http-post-bytes: {common.yes(verdict['ratio'])}; "
                  f"RSS growth {small}→{large} MiB < {RSS_GROWTH_MIB} MiB: {common.yes(verdict['rss'])} "
                  f"({growth:+.1f} MiB)")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable, common.ROOT), *sys.argv]),
        "machine": common.machine(), "mode": mode, "chunk_mib": args.chunk, "primed": not args.cold,
        "targets": {"ratio": RATIO, "rss_growth_mib": RSS_GROWTH_MIB},
        "results": results, "verdict": verdict}, indent=2) + "\n")
    console.print(f"results: {os.path.relpath(output)}")
    return 0 if verdict["ratio"] and verdict["rss"] else 1


if __name__ == "__main__":
    sys.exit(main())
