"""The S3 backend against the bare S3 API, measured in the same run against the same server.

    .venv/bin/python benchmarks/s3.py                             # 64 and 256 MiB, 8 MiB appends, 3 runs
    .venv/bin/python benchmarks/s3.py --database-url postgresql://postgres@127.0.0.1/postgres \\
        --broker-url redis://127.0.0.1:6379/14                    # verification in a Celery worker

It starts moto's S3 server as its own process (tests/s3.py, S3's 5 MiB part rule). For each
size it builds a real wheel, makes a fresh bucket and a fresh database, and starts two fresh
gunicorn servers on them as docs/deployment.md runs it (gthread, GLIBC_TUNABLES), one for
each mechanism, so that each server's memory is that of one mechanism. Then, per run:

- **boto3**: a bare multipart upload of the wheel with boto3's managed transfer, the client
  built as the app builds it, one ``upload2.s3_part_size`` part at a time as the app sends
  them (no hashing, no database): the baseline;
- **http-post-bytes**: POST the bytes to the first server, complete (201);
- **resumable**: ``--chunk`` MiB appends to the second server, complete (202), poll until the
  verification (assembling the parts, reading the metadata) has completed it.

Each figure counts from the first byte sent to the object (or file) being complete. After
each upload the benchmark checks the stored object's size and the sha256 the server
recorded, then deletes it; at the end the bucket must hold no object and no multipart upload.
Targets (docs/benchmarks.md): http-post-bytes at least 0.8 of boto3, resumable at least 0.6
of http-post-bytes, and each server's peak RSS growing by less than 32 MiB from the smallest
size to the largest.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import signal
import sys
import tempfile
import time

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import resumable as mechanisms
import upload as common

from tests.artifacts import build_wheel, sha256_file

MiB = common.MiB
POST_RATIO = 0.8  # http-post-bytes throughput over boto3's
RESUMABLE_RATIO = 0.6  # resumable throughput over http-post-bytes
RSS_GROWTH_MIB = common.RSS_GROWTH_MIB
PART_MIB = 8  # upload2.s3_part_size, the app's default
KINDS = ("boto3", "post", "resumable")
console = Console(width=None if sys.stdout.isatty() else 120)


def parse_args(argv=None) -> argparse.Namespace:
    p = mechanisms.arguments(__doc__)
    args = mechanisms.sizes(p.parse_args(argv))
    if args.chunk < 5:
        p.error("--chunk must be at least S3's smallest part, 5 MiB")
    # What common.server_process reads: gunicorn as docs/deployment.md runs it.
    args.worker_class, args.threads, args.gunicorn_tunables = "gthread", 4, common.GUNICORN_TUNABLES
    return args


def write_ini(workdir: pathlib.Path, name: str, database_url: str, s3: dict, max_bytes: int, args) -> pathlib.Path:
    """One server's ini: the S3 backend, a spool dir of its own, no storage folder."""
    (workdir / f"{name}-spool").mkdir()
    ini = workdir / f"{name}.ini"
    broker = f"celery.broker_url = {args.broker_url}\n" if args.broker_url else ""
    ini.write_text(
        "[app:main]\nuse = egg:pypi-upload2\n"
        f"sqlalchemy.url = {database_url.replace('%', '%%')}\nupload2.storage = {workdir / 'no-files'}\n"
        f"upload2.max_file_size = {max_bytes}\nupload2.max_append_size = {args.chunk * MiB}\n{broker}"
        f"upload2.s3_spool_dir = {workdir / f'{name}-spool'}\nupload2.s3_part_size = {PART_MIB * MiB}\n"
        + "".join(f"{key} = {value}\n" for key, value in s3.items()))
    return ini


def bare_multipart(client, bucket: str, path: pathlib.Path) -> float:
    """Seconds for boto3's managed transfer to store ``path``, one part at a time."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=PART_MIB * MiB, multipart_chunksize=PART_MIB * MiB,
                            max_concurrency=1, use_threads=False)
    start = time.perf_counter()
    client.upload_file(str(path), bucket, f"baseline/{path.name}", Config=config)
    return time.perf_counter() - start


def bucket_sizes(s3, bucket: str) -> dict[str, int]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", ())}


def stored_as_sent(client, session: dict, path: pathlib.Path, digest: str, s3, bucket: str) -> list[str]:
    """Problems with the file just uploaded, the only one staged: the sha256 the stage lists,
    the size of the one distribution in the bucket. Then the file is deleted (its bytes
    purged), as a client replacing it would."""
    problems = []
    listing = client.get(session["links"]["stage"] + common.PROJECT + "/",
                         headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    listed = {f["filename"]: f["hashes"]["sha256"] for f in listing["files"]}
    if listed != {path.name: digest}:
        problems.append(f"{path.name}: the stage lists {listed}, not its sha256 {digest}")
    stored = [size for key, size in bucket_sizes(s3, bucket).items() if not key.endswith(".metadata")]
    if stored != [path.stat().st_size]:
        problems.append(f"{path.name}: the bucket holds distributions of {stored} bytes, not {path.stat().st_size}")
    link = client.get(session["links"]["session"]).json()["files"][path.name]["link"]
    if (deleted := client.delete(link)).status_code != 204:
        problems.append(f"{path.name}: DELETE answered {deleted.status_code}")
    return problems


def measure(size_mib: int, wheel: pathlib.Path, args, workdir: pathlib.Path, endpoint: str) -> dict:
    from pypi_upload2.settings import parse
    from pypi_upload2.storage.s3 import make_client
    from tests.s3 import multipart_uploads, new_bucket, s3_client, s3_settings

    digest, size = sha256_file(wheel), wheel.stat().st_size
    bucket = new_bucket(s3_client(endpoint))
    s3 = s3_settings(endpoint, bucket)
    # The baseline's client is the app's: the same configuration, checksums only where required.
    client_s3 = make_client(parse(s3))
    problems: list[str] = []
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    complete_s: list[float] = []  # http-post-bytes: the complete request (inspection)
    verify_s: list[float] = []  # resumable: 202 to completed (assembly, inspection)
    memory = {}
    with tempfile.TemporaryDirectory(prefix=f"s3-{size_mib}-", dir=workdir) as tmp:
        tmp = pathlib.Path(tmp)
        with common.fresh_database(tmp, args.database_url) as url, contextlib.ExitStack() as stack:
            inis = {kind: write_ini(tmp, kind, url, s3, size + MiB, args) for kind in ("post", "resumable")}
            token = common.create_user(inis["post"])
            servers = {}
            for kind, ini in inis.items():
                port = common.free_port()
                # server_process's workdir holds the server's log and TMPDIR: one of its own.
                (tmp / kind).mkdir()
                proc, base = stack.enter_context(common.server_process("gunicorn", ini, port, args, tmp / kind))
                servers[kind] = (proc, base)
            worker = stack.enter_context(mechanisms.celery_worker(inis["resumable"], tmp, args.broker_url))
            samplers = {kind: common.MemorySampler(proc.pid) for kind, (proc, _) in servers.items()}
            if worker:
                samplers["worker"] = common.MemorySampler(worker.pid)
            for sampler in samplers.values():
                sampler.start()
            client = stack.enter_context(httpx.Client(auth=("__token__", token), timeout=httpx.Timeout(900)))
            try:
                session = common.call(client, servers["post"][1] + "/2.0/",
                                      {"name": common.PROJECT, "version": f"{size_mib}.0"}, 201).json()
                on = {kind: session | {"links": {key: link.replace(servers["post"][1], base)
                                                 for key, link in session["links"].items()}}
                      for kind, (_, base) in servers.items()}
                # Each upload a filename of its own: http-post-bytes and boto3 the even ones.
                paths = common.variants(wheel, 2 * args.runs)
                for run in range(args.runs):
                    for kind in KINDS:
                        path = paths[2 * run + (kind == "resumable")]
                        if not args.cold:  # the same start for each: freshly freed pages (upload.prime())
                            common.prime(tmp, 2 * size)
                        if kind == "boto3":
                            times[kind].append(bare_multipart(client_s3, bucket, path))
                            stored = client_s3.head_object(Bucket=bucket, Key=f"baseline/{path.name}")
                            if stored["ContentLength"] != size:
                                problems.append(f"boto3 stored {stored['ContentLength']} bytes, not {size}")
                            client_s3.delete_object(Bucket=bucket, Key=f"baseline/{path.name}")
                            continue
                        if kind == "post":
                            total, complete = mechanisms.post_bytes(client, on[kind], path, digest)
                            times[kind].append(total)
                            complete_s.append(complete)
                        else:
                            total, verify = mechanisms.resumable(client, on[kind], path, digest, args.chunk * MiB)
                            times[kind].append(total)
                            verify_s.append(verify)
                        problems += stored_as_sent(client, session, path, digest, client_s3, bucket)
            finally:
                memory = {kind: sampler.stop()["peak_process_mib"] for kind, sampler in samplers.items()}
    # Nothing left behind: every file was deleted, so no object and no multipart upload remain.
    leftover = sorted(bucket_sizes(client_s3, bucket)) + multipart_uploads(client_s3, bucket)
    if leftover:
        problems.append(f"left in the bucket: {leftover}")
    best = {kind: min(seconds) for kind, seconds in times.items()}
    return {**{f"{kind}_mib_s": size / MiB / best[kind] for kind in KINDS},
            "post_ratio": best["boto3"] / best["post"], "resumable_ratio": best["post"] / best["resumable"],
            "complete_s": complete_s[times["post"].index(best["post"])],
            "verify_s": verify_s[times["resumable"].index(best["resumable"])], "seconds": times,
            "peak_rss_mib": memory, "problems": problems}


def main(argv=None) -> int:
    from tests.s3 import moto_server

    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    output = common.output_path(args, "s3")
    results = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="upload2-s3-", dir=args.tmpdir) as workdir:
        workdir = pathlib.Path(workdir)
        with moto_server(workdir) as endpoint:
            for s in args.sizes:
                with console.status(f"{s} MiB: building the wheel, then {args.runs} uploads of each kind"):
                    wheel = build_wheel(workdir, common.PROJECT, f"{s}.0", padding=s * MiB)
                    results[s] = r = measure(s, wheel, args, workdir, endpoint)
                console.print(f"{s} MiB: boto3 {r['boto3_mib_s']:.0f} MiB/s, http-post-bytes {r['post_mib_s']:.0f} "
                              f"MiB/s ({r['post_ratio']:.2f}), resumable {r['resumable_mib_s']:.0f} MiB/s "
                              f"({r['resumable_ratio']:.2f}), peak RSS " + ", ".join(
                                  f"{k} {v:.0f} MiB" for k, v in r["peak_rss_mib"].items()))
    small, large = args.sizes[0], args.sizes[-1]
    growth = {kind: results[large]["peak_rss_mib"][kind] - results[small]["peak_rss_mib"][kind]
              for kind in results[large]["peak_rss_mib"]}
    verdict = {"post_ratio": min(r["post_ratio"] for r in results.values()) >= POST_RATIO,
               "resumable_ratio": min(r["resumable_ratio"] for r in results.values()) >= RESUMABLE_RATIO,
               "rss_growth_mib": growth, "rss": all(g < RSS_GROWTH_MIB for g in growth.values())}
    problems = [p for r in results.values() for p in r["problems"]]
    mode = f"gunicorn, {'PostgreSQL' if args.database_url else 'SQLite'}, " + (
        "Celery worker" if args.broker_url else "eager tasks")
    table = Table(title=f"S3 (moto): first byte to complete, {args.chunk} MiB appends ({mode})")
    for column in ("size", "boto3 MiB/s", "post-bytes MiB/s", "× boto3", "complete s", "resumable MiB/s",
                   "× post-bytes", "verification s", "peak RSS MiB (post / resumable)"):
        table.add_column(column, justify="right")
    for s, r in results.items():
        rss = r["peak_rss_mib"]
        table.add_row(f"{s} MiB", f"{r['boto3_mib_s']:.0f}", f"{r['post_mib_s']:.0f}", f"{r['post_ratio']:.2f}",
                      f"{r['complete_s']:.2f}", f"{r['resumable_mib_s']:.0f}", f"{r['resumable_ratio']:.2f}", f"{r['verify_s']:.2f}",
                      f"{rss['post']:.0f} / {rss['resumable']:.0f}")
    console.print(table)
    console.print(f"http-post-bytes ≥ {POST_RATIO} × boto3: {common.yes(verdict['post_ratio'])}; "
                  f"resumable ≥ {RESUMABLE_RATIO} × http-post-bytes: {common.yes(verdict['resumable_ratio'])}; "
                  f"RSS growth {small}→{large} MiB < {RSS_GROWTH_MIB} MiB: {common.yes(verdict['rss'])} ("
                  + ", ".join(f"{k} {g:+.1f} MiB" for k, g in growth.items()) + ")")
    for problem in problems:
        console.print(f"[red]{problem}[/]")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable, common.ROOT), *sys.argv]),
        "machine": {**common.machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "mode": mode, "chunk_mib": args.chunk, "part_mib": PART_MIB, "primed": not args.cold,
        "targets": {"post_ratio": POST_RATIO, "resumable_ratio": RESUMABLE_RATIO, "rss_growth_mib": RSS_GROWTH_MIB},
        "results": results, "verdict": verdict, "problems": problems}, indent=2) + "\n")
    console.print(f"results: {os.path.relpath(output)}")
    if problems:
        return 2
    return 0 if verdict["post_ratio"] and verdict["resumable_ratio"] and verdict["rss"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
