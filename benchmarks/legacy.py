"""Legacy upload benchmark: one wheel through this server's legacy endpoint and through pypiserver.

    .venv/bin/python benchmarks/legacy.py --sizes 64,256

For each size it builds a real wheel and measures the ideal pipeline (read, sha256, write with
fsync), then posts the wheel as twine does (multipart/form-data with sha256 and blake2b-256
digests, the file streamed from disk with sendfile) to:

- this server's ``/legacy/`` under gunicorn (streaming: the form is parsed as it arrives),
  on a fresh database, with a token made by the CLI;
- pypiserver, installed from PyPI into a venv of its own, started with ``-P . -a .`` (no
  authentication), once under gunicorn and once with its default server.

It reports the best of ``--runs`` uploads in MiB/s, the ratio to pypiserver and to the pipeline,
and each server's peak RSS. The targets (docs/legacy.md): at least pypiserver's throughput,
and memory flat with the upload's size.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import http.client
import json
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import upload as bench  # noqa: E402  (the 2.0 benchmark: servers, memory, pipeline)
from rich.table import Table  # noqa: E402

from tests.artifacts import build_wheel  # noqa: E402

MiB = bench.MiB
PROJECT = "bench"
RSS_GROWTH_MIB = bench.RSS_GROWTH_MIB
console = bench.console


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="64,256", help="wheel sizes in MiB, comma-separated (default: 64,256)")
    p.add_argument("--runs", type=int, default=3, help="uploads per server and size; the best counts (default: 3)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers, for both servers (default: 2)")
    p.add_argument("--database-url", help="PostgreSQL server URL for this server (default: a fresh SQLite file)")
    p.add_argument("--pypiserver", default="pypiserver", help="pip requirement for pypiserver (default: latest)")
    p.add_argument("--tmpdir", help="where wheels, databases, venvs and stored files go (default: the system's)")
    p.add_argument("--cold", action="store_true",
                   help="do not prime the page allocator before each timed upload (see upload.prime())")
    p.add_argument("--output", type=pathlib.Path,
                   help="JSON result file (default: benchmarks/results/legacy-<time>.json)")
    args = p.parse_args(argv)
    args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    # What bench.server_process reads for gunicorn.
    args.worker_class, args.threads = "sync", 1
    return args


# -- the client: a form as twine sends it, the file streamed with sendfile -------------------------

def post_form(url: str, path: pathlib.Path, fields: list[tuple[str, str]], token: str | None) -> tuple[int, str, float]:
    """POST ``fields`` and ``path`` as the ``content`` part; (status, body, seconds)."""
    boundary = secrets.token_hex(16)
    head = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in fields)
    head += (f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{path.name}"\r\n'
             "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=900)
    conn.putrequest("POST", parts.path)
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
    if token:
        conn.putheader("Authorization", "Basic " + base64.b64encode(f"__token__:{token}".encode()).decode())
    conn.endheaders()
    start = time.perf_counter()
    conn.send(head)
    with open(path, "rb") as fh:
        conn.sock.sendfile(fh)
    conn.send(tail)
    response = conn.getresponse()
    body = response.read().decode(errors="replace")
    seconds = time.perf_counter() - start
    conn.close()
    return response.status, body, seconds


def twine_fields(path: pathlib.Path, version: str) -> list[tuple[str, str]]:
    digests = hashlib.sha256(), hashlib.blake2b(digest_size=32)
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            for d in digests:
                d.update(chunk)
    return [("name", PROJECT), ("version", version), ("filetype", "bdist_wheel"), ("pyversion", "py3"),
            ("metadata_version", "2.1"), ("sha256_digest", digests[0].hexdigest()),
            ("blake2_256_digest", digests[1].hexdigest()), (":action", "file_upload"), ("protocol_version", "1")]


def measured(proc: subprocess.Popen, url: str, wheels: list[pathlib.Path], token: str | None, args,
             workdir: pathlib.Path) -> dict:
    """Upload each wheel once to ``url``: the best MiB/s, the least server CPU seconds, the
    server's memory."""
    idle = sum(bench.status_kib(pid, "VmRSS") for pid in bench.process_tree(proc.pid)) / 1024
    sampler = bench.MemorySampler(proc.pid)
    sampler.start()
    best, cpu = 0.0, float("inf")
    try:
        for wheel in wheels:
            fields = twine_fields(wheel, wheel.name.split("-")[1])
            if not args.cold:
                bench.prime(workdir, wheel.stat().st_size)
            before = sum(bench.cpu_seconds(proc.pid))
            status, body, seconds = post_form(url, wheel, fields, token)
            if status != 200:
                raise RuntimeError(f"{url}: {wheel.name}: {status} {body[:300]}")
            best = max(best, wheel.stat().st_size / MiB / seconds)
            cpu = min(cpu, sum(bench.cpu_seconds(proc.pid)) - before)
    finally:
        memory = sampler.stop()
    return {"best_mib_s": best, "server_cpu_s": cpu, "idle_total_mib": idle, **memory}


# -- this server --------------------------------------------------------------------------------

def this_server(size: int, wheels: list[pathlib.Path], args, workdir: pathlib.Path) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"legacy-{size}-", dir=workdir) as tmp:
        tmp = pathlib.Path(tmp)
        port = bench.free_port()
        with bench.fresh_database(tmp, args.database_url) as url:
            ini = bench.write_ini(tmp, url, port, max(args.sizes) * MiB + MiB)
            token = bench.create_user(ini)
            with bench.server_process("gunicorn", ini, port, args, tmp) as (proc, base):
                result = measured(proc, f"{base}/legacy/", wheels, token, args, tmp)
                listed = json.loads(bench.httpx.get(f"{base}/simple/{PROJECT}/", headers={
                    "Accept": "application/vnd.pypi.simple.v1+json"}).text)["files"]
                if {f["filename"] for f in listed} != {w.name for w in wheels}:
                    raise RuntimeError("the index does not list every uploaded wheel")
    return result


# -- pypiserver ---------------------------------------------------------------------------------

def pypiserver_venv(workdir: pathlib.Path, requirement: str) -> pathlib.Path:
    venv = workdir / "pypiserver-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    requirement, "gunicorn"], check=True)
    return venv


def pypiserver(server: str, size: int, wheels: list[pathlib.Path], venv: pathlib.Path, args,
               workdir: pathlib.Path) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"pypiserver-{server}-{size}-", dir=workdir) as tmp:
        tmp = pathlib.Path(tmp)
        packages = tmp / "packages"
        packages.mkdir()
        port = bench.free_port()
        command = [str(venv / "bin" / "pypi-server"), "run", "-p", str(port), "-i", "127.0.0.1",
                   "-P", ".", "-a", ".", str(packages)]
        if server == "gunicorn":
            command[2:2] = ["--server", "gunicorn"]
        log_path = tmp / "pypiserver.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
                                    env={**os.environ, "TMPDIR": str(tmp)}, start_new_session=True)
        try:
            bench.wait_ready(proc, f"http://127.0.0.1:{port}/simple/", log_path)
            result = measured(proc, f"http://127.0.0.1:{port}/", wheels, None, args, tmp)
            stored = {p.name: p.stat().st_size for p in packages.iterdir()}
            if stored != {w.name: w.stat().st_size for w in wheels}:
                raise RuntimeError(f"pypiserver stored {stored}")
        finally:
            bench.stop_group(proc)
    return result


# -- report -------------------------------------------------------------------------------------

def report(results: dict, sizes: list[int], pipelines: dict[int, float]) -> dict:
    table = Table(title="Legacy upload (twine's form, the wheel streamed by the client)")
    for column in ("server", "size", "MiB/s", "× pypiserver", "× pipeline", "server CPU s", "idle RSS MiB",
                   "peak RSS MiB"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for s in sizes:
        table.add_row("pipeline (read, sha256, write, fsync)", f"{s} MiB", f"{pipelines[s]:.0f}", "", "1.00", "", "",
                      "")
    verdict = {}
    for kind, by_size in results.items():
        for s in sizes:
            r = by_size[s]
            best_pypiserver = max(results[k][s]["best_mib_s"] for k in results if k.startswith("pypiserver"))
            r["vs_pypiserver"] = r["best_mib_s"] / best_pypiserver
            table.add_row(kind, f"{s} MiB", f"{r['best_mib_s']:.0f}", f"{r['vs_pypiserver']:.2f}",
                          f"{r['best_mib_s'] / pipelines[s]:.2f}", f"{r['server_cpu_s']:.2f}",
                          f"{r['idle_total_mib']:.0f}", f"{r['peak_process_mib']:.0f}")
        growth = by_size[sizes[-1]]["peak_process_mib"] - by_size[sizes[0]]["peak_process_mib"]
        verdict[kind] = {"rss_growth_mib": growth, "min_vs_pypiserver": min(by_size[s]["vs_pypiserver"] for s in sizes)}
    console.print(table)
    ours = verdict["this server (gunicorn)"]
    console.print(f"this server vs the best pypiserver: lowest ratio {ours['min_vs_pypiserver']:.2f} "
                  f"(target ≥ 1.00); peak RSS growth {sizes[0]} → {sizes[-1]} MiB: "
                  f"{ours['rss_growth_mib']:+.1f} MiB (target < {RSS_GROWTH_MIB} MiB)")
    return verdict


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    output = args.output or ROOT / "benchmarks" / "results" / (
        "legacy-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
    results: dict[str, dict[int, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="upload2-legacy-bench-", dir=args.tmpdir) as workdir:
        workdir = pathlib.Path(workdir)
        with console.status("installing pypiserver into its own venv"):
            venv = pypiserver_venv(workdir, args.pypiserver)
        version = subprocess.run([str(venv / "bin" / "python"), "-c",
                                  "import pypiserver; print(pypiserver.__version__)"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        wheels, pipelines = {}, {}
        for s in args.sizes:
            wheel = build_wheel(workdir, PROJECT, f"{s}.0", padding=s * MiB)
            wheels[s] = bench.variants(wheel, args.runs)
            pipelines[s], pipeline_cpu = bench.pipeline(wheel, workdir, primed=not args.cold)
            console.print(f"pipeline {s} MiB: {pipelines[s]:.0f} MiB/s, {pipeline_cpu:.2f} CPU s")
        servers = {
            "this server (gunicorn)": lambda s: this_server(s, wheels[s], args, workdir),
            "pypiserver (gunicorn)": lambda s: pypiserver("gunicorn", s, wheels[s], venv, args, workdir),
            "pypiserver (default server)": lambda s: pypiserver("auto", s, wheels[s], venv, args, workdir),
        }
        for kind, measure in servers.items():
            results[kind] = {}
            for s in args.sizes:
                with console.status(f"{kind}, {s} MiB"):
                    r = results[kind][s] = measure(s)
                console.print(f"{kind} {s} MiB: {r['best_mib_s']:.0f} MiB/s, peak RSS {r['peak_process_mib']:.0f} MiB")
    verdict = report(results, args.sizes, pipelines)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv]),
        "machine": bench.machine(),
        "options": {"sizes_mib": args.sizes, "runs": args.runs, "workers": args.workers,
                    "database": "postgresql" if args.database_url else "sqlite", "pypiserver": version},
        "pipeline_mib_s": pipelines,
        "results": results,
        "verdict": verdict,
    }, indent=2) + "\n")
    console.print(f"results: {os.path.relpath(output)}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
