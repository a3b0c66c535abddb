"""Small requests: what an upload pays beyond its bytes, 8 clients at once.

    .venv/bin/python benchmarks/small.py                        # 160 releases, 160 legacy uploads, 10 KiB
    .venv/bin/python benchmarks/small.py --releases 40 --legacy 40 --skip-pypiserver

In one run, each on a fresh server (gunicorn, 2 workers × 4 threads, as docs/deployment.md
runs it) and a fresh SQLite database (or --database-url):

1. ``--releases`` 2.0 releases of one small wheel each through their five requests (create
   session, create file, POST bytes, complete, publish), ``--clients`` at a time, after a
   warm-up of one release per client: releases per second, and each step's p50/p95/p99;
2. ``--legacy`` legacy uploads of small wheels (twine's form), ``--clients`` at a time, to
   this server and to pypiserver (installed from PyPI into a venv of its own, under gunicorn
   with the same workers and threads, and under its default server).

Targets (docs/benchmarks.md): at least 50 releases/s; legacy uploads at least pypiserver's
rate; every 2.0 step's p95 under 4 × its p50.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time

from rich.table import Table

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import legacy as bench_legacy  # twine's form, pypiserver
import load  # the concurrent 2.0 flow, its checks and figures
import upload as common  # servers, databases, users

from tests.artifacts import build_wheel

KiB = 1024
RELEASES_PER_S = 50
P95_OVER_P50 = 4
console = common.console


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--releases", type=int, default=160, help="timed 2.0 releases (default: 160)")
    p.add_argument("--legacy", type=int, default=160, help="timed legacy uploads per server (default: 160)")
    p.add_argument("--size-kib", type=int, default=10, help="each wheel's size in KiB (default: 10)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default: 8)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default: 2)")
    p.add_argument("--threads", type=int, default=4, help="threads per gthread worker (default: 4)")
    p.add_argument("--database-url", help="a PostgreSQL server URL (default: a fresh SQLite file)")
    p.add_argument("--pypiserver", default="pypiserver", help="pip requirement for pypiserver (default: latest)")
    p.add_argument("--pypiserver-venv", type=pathlib.Path, help="an existing venv with pypiserver and gunicorn")
    p.add_argument("--skip-pypiserver", action="store_true", help="measure this server only")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout, not as tables")
    p.add_argument("--tmpdir", help="where wheels, databases and stored files go (default: the system's)")
    p.add_argument("--output", type=pathlib.Path, help="JSON result file (default: benchmarks/results/small-...)")
    args = p.parse_args(argv)
    args.worker_class, args.gunicorn_tunables = "gthread", common.GUNICORN_TUNABLES
    return args


# -- 2.0 releases ----------------------------------------------------------------------------------

def releases(args, workdir: pathlib.Path) -> dict:
    """A warm-up release per client, then the timed ones; load.py's checks after."""
    flow = load.parse_args(["--sessions", str(args.clients + args.releases), "--files", "1",
                            "--size-kib", str(args.size_kib), "--projects", str(args.clients),
                            "--resumable", "0", "--workers", str(args.workers), "--threads", str(args.threads)])
    flow.database_url = args.database_url
    work = load.jobs(workdir, flow)
    warmup, timed = work[:args.clients], work[args.clients:]
    port = common.free_port()
    with common.fresh_database(workdir, args.database_url) as url:
        ini = load.write_ini(workdir, url, port, common.MiB, flow)
        token = common.create_user(ini)
        with common.server_process("gunicorn", ini, port, flow, workdir) as (proc, base):
            load.run_load(base, token, warmup, args.clients, common.MiB)
            before = common.counters(proc.pid)
            rec, wall, failures = load.run_load(base, token, timed, args.clients, common.MiB)
            used = {k: v - before[k] for k, v in common.counters(proc.pid).items()}
            bad = load.verify_index(base, work)
        log = (workdir / "gunicorn.log").read_text(errors="replace")
        left = load.orphans(url, workdir / "files")
    result = {"releases": len(timed), "wall_s": wall, "releases_per_s": (len(timed) - len(failures)) / wall,
              "steps": load.step_figures(rec.samples), "server_errors": rec.errors[:20], "failures": failures[:20],
              "download_problems": bad[:20], "log_tracebacks": log.count("Traceback"),
              "log_database_locked": log.count("database is locked"),
              "server_cpu_ms_per_release": (used["server_user_s"] + used["server_system_s"]) * 1000 / len(timed),
              "client_cpu_ms_per_release": rec.client_cpu_s * 1000 / len(timed),
              **left, **used}
    result["files"] = len(work)
    return result


# -- legacy uploads --------------------------------------------------------------------------------

def legacy_wheels(workdir: pathlib.Path, args, count: int, prefix: str) -> list[tuple[pathlib.Path, list]]:
    """``count`` small wheels, a project per client (so no two first uploads race for a name)
    and a version per upload, each with twine's fields."""
    out = []
    for n in range(count):
        wheel = build_wheel(workdir, f"{prefix}{n % args.clients}", f"1.{n}", padding=args.size_kib * KiB)
        fields = bench_legacy.twine_fields(wheel, f"1.{n}")
        fields[0] = ("name", f"{prefix}{n % args.clients}")
        out.append((wheel, fields))
    return out


def legacy_rate(url: str, uploads: list, token: str | None, clients: int) -> dict:
    """Post every upload, ``clients`` at a time: uploads per second and latency percentiles."""
    seconds, lock, errors = [], threading.Lock(), []

    def post(item):
        wheel, fields = item
        start = time.perf_counter()
        status, body, _ = bench_legacy.post_form(url, wheel, fields, token)
        with lock:
            seconds.append(time.perf_counter() - start)
            if status != 200:
                errors.append(f"{wheel.name}: {status} {body[:200]}")

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, uploads))
    wall = time.perf_counter() - start
    return {"uploads": len(uploads), "wall_s": wall, "uploads_per_s": len(uploads) / wall, "errors": errors[:20],
            **{f"p{q}_ms": load.percentile(seconds, q) * 1000 for q in (50, 95, 99)}}


def legacy_here(args, workdir: pathlib.Path) -> dict:
    warmup = legacy_wheels(workdir, args, args.clients, "warm")
    uploads = legacy_wheels(workdir, args, args.legacy, "legacy")
    port = common.free_port()
    with common.fresh_database(workdir, args.database_url) as url:
        ini = load.write_ini(workdir, url, port, common.MiB, load.parse_args(["--chunk-mib", "1"]))
        token = common.create_user(ini)
        with common.server_process("gunicorn", ini, port, args, workdir) as (proc, base):
            legacy_rate(f"{base}/legacy/", warmup, token, args.clients)
            before = common.counters(proc.pid)
            result = legacy_rate(f"{base}/legacy/", uploads, token, args.clients)
            used = {k: v - before[k] for k, v in common.counters(proc.pid).items()}
    result["server_cpu_ms_per_upload"] = (used["server_user_s"] + used["server_system_s"]) * 1000 / len(uploads)
    return result


def legacy_pypiserver(server: str, venv: pathlib.Path, args, workdir: pathlib.Path) -> dict:
    warmup = legacy_wheels(workdir, args, args.clients, "warm")
    uploads = legacy_wheels(workdir, args, args.legacy, "legacy")
    packages = workdir / "packages"
    packages.mkdir()
    port = common.free_port()
    if server == "gunicorn":
        # pypiserver's app factory under the same gunicorn as this server.
        factory = f"pypiserver:app(roots=['{packages}'], authenticate=[], password_file='.')"
        command = [str(venv / "bin" / "gunicorn"), factory, "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
                   "--worker-class", "gthread", "--threads", str(args.threads), "--log-level", "warning"]
    else:
        command = [str(venv / "bin" / "pypi-server"), "run", "-p", str(port), "-i", "127.0.0.1", "-P", ".", "-a", ".",
                   str(packages)]
    log_path = workdir / "pypiserver.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    try:
        common.wait_ready(proc, f"http://127.0.0.1:{port}/simple/", log_path)
        legacy_rate(f"http://127.0.0.1:{port}/", warmup, None, args.clients)
        before = common.counters(proc.pid)
        result = legacy_rate(f"http://127.0.0.1:{port}/", uploads, None, args.clients)
        used = {k: v - before[k] for k, v in common.counters(proc.pid).items()}
    finally:
        common.stop_group(proc)
    result["server_cpu_ms_per_upload"] = (used["server_user_s"] + used["server_system_s"]) * 1000 / len(uploads)
    return result


# -- report ----------------------------------------------------------------------------------------

def verdict(two: dict, legacy: dict) -> dict:
    worst = max(f["p95_ms"] / f["p50_ms"] for f in two["steps"].values())
    out = {"releases_per_s": two["releases_per_s"] >= RELEASES_PER_S, "worst_p95_over_p50": worst,
           "p95_under_4_p50": worst < P95_OVER_P50}
    others = [r["uploads_per_s"] for k, r in legacy.items() if k.startswith("pypiserver")]
    if others:
        out["legacy_vs_pypiserver"] = legacy["this server (gunicorn)"]["uploads_per_s"] / max(others)
        out["legacy"] = out["legacy_vs_pypiserver"] >= 1
    return out


def report(two: dict, legacy: dict, judged: dict, args) -> None:
    console.print(load.steps_table(f"2.0 releases of a {args.size_kib} KiB wheel, {args.clients} clients "
                                   f"(gunicorn {args.workers}×{args.threads}, "
                                   f"{'PostgreSQL' if args.database_url else 'SQLite'})", two["steps"]))
    console.print(f"{two['releases_per_s']:.1f} releases/s ({two['releases']} in {two['wall_s']:.1f} s), "
                  f"server CPU {two['server_cpu_ms_per_release']:.1f} ms per release, "
                  f"client CPU {two['client_cpu_ms_per_release']:.1f}")
    table = Table(title=f"Legacy uploads of a {args.size_kib} KiB wheel, {args.clients} clients")
    for column in ("server", "uploads/s", "p50 ms", "p95 ms", "p99 ms", "server CPU ms / upload", "errors"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for kind, r in legacy.items():
        table.add_row(kind, f"{r['uploads_per_s']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}",
                      f"{r['p99_ms']:.1f}", f"{r['server_cpu_ms_per_upload']:.1f}", str(len(r["errors"])))
    console.print(table)
    lines = [f"releases/s ≥ {RELEASES_PER_S}: {common.yes(judged['releases_per_s'])}",
             (f"p95 < {P95_OVER_P50} × p50 at every step: {common.yes(judged['p95_under_4_p50'])} "
              f"(worst {judged['worst_p95_over_p50']:.1f})")]
    if "legacy" in judged:
        lines.append(f"legacy ≥ pypiserver: {common.yes(judged['legacy'])} ({judged['legacy_vs_pypiserver']:.2f})")
    console.print("; ".join(lines))


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    output = args.output or common.ROOT / "benchmarks" / "results" / (
        "small-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="upload2-small-", dir=args.tmpdir) as workdir:
        workdir = pathlib.Path(workdir)
        parts = {name: workdir / name for name in ("releases", "legacy", "pypiserver-gunicorn", "pypiserver-auto")}
        for path in parts.values():
            path.mkdir()
        with console.status("2.0 releases"):
            two = releases(args, parts["releases"])
        with console.status("legacy uploads"):
            legacy = {"this server (gunicorn)": legacy_here(args, parts["legacy"])}
        if not args.skip_pypiserver:
            venv = args.pypiserver_venv
            if venv is None:
                with console.status("installing pypiserver into its own venv"):
                    venv = bench_legacy.pypiserver_venv(workdir, args.pypiserver)
            for server in ("gunicorn", "auto"):
                with console.status(f"pypiserver ({server})"):
                    legacy[f"pypiserver ({'gunicorn' if server == 'gunicorn' else 'default server'})"] = \
                        legacy_pypiserver(server, venv, args, parts[f"pypiserver-{server}"])
    found = load.problems(two) + [f"legacy {k}: {r['errors'][0]}" for k, r in legacy.items() if r["errors"]]
    judged = verdict(two, legacy)
    document = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable, common.ROOT), *sys.argv]),
        "machine": {**common.machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "options": {k: v for k, v in vars(args).items() if k not in ("output", "json", "tmpdir")},
        "targets": {"releases_per_s": RELEASES_PER_S, "p95_over_p50": P95_OVER_P50, "legacy_vs_pypiserver": 1},
        "releases": two, "legacy": legacy, "verdict": judged, "problems": found,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if args.json:
        print(json.dumps(document, indent=2, default=str))
    else:
        report(two, legacy, judged, args)
        if found:
            console.print("[red]" + "; ".join(found) + "[/]")
        console.print(f"results: {os.path.relpath(output)}")
    return 1 if found else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
