"""Upload 2.0 benchmark: throughput, server memory and publish time against real servers.

    make bench                                      # --sizes 32,256 --servers waitress,gunicorn
    .venv/bin/python benchmarks/upload.py --sizes 32,256 --servers gunicorn --runs 5

For each size it builds a real wheel and measures the ideal pipeline (read, sha256, write
with fsync, 1 MiB chunks). Then for each server and size it starts a fresh server on a
fresh database, creates a user with the CLI and runs the full 2.0 flow ``--runs`` times
with httpx streaming the wheel from disk, reading the server's CPU time, page faults and
peak RSS from /proc. The figures go to a table and to a JSON file under
benchmarks/results/; docs/benchmarks.md has the targets and the figures measured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import pathlib
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.artifacts import build_wheel, sha256_file  # noqa: E402

MiB = 1024 * 1024
CHUNK = MiB
BIN = pathlib.Path(sys.executable).parent
CT = "application/vnd.pypi.upload.v2+json"
META = {"api-version": "2.0"}
PROJECT = "bench"

# glibc's malloc hands each 1 MiB buffer gunicorn's body reader allocates (recv(1 MiB),
# then shrunk) back to the kernel and faults it in again: heap-allocate below 4 MiB and
# keep 32 MiB of free heap instead (docs/deployment.md runs gunicorn so).
GUNICORN_TUNABLES = "glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=33554432"

# The targets (docs/benchmarks.md).
THROUGHPUT_RATIO = 0.7  # of the ideal pipeline
RSS_GROWTH_MIB = 32  # between the smallest and the largest upload
# Publish may grow by at most this share of the time the pipeline takes to copy the size
# difference (a publish that copied bytes would grow by all of it), or by the floor: below
# it, a difference is the noise of two database commits.
PUBLISH_SHARE, PUBLISH_FLOOR_S = 0.25, 0.05

# A wide table even when the output is not a terminal (make bench | tee).
console = Console(width=None if sys.stdout.isatty() else 120)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="32,256", help="wheel sizes in MiB, comma-separated (default: 32,256)")
    p.add_argument("--servers", default="waitress,gunicorn",
                   help="servers to run, comma-separated: waitress, gunicorn (default: both)")
    p.add_argument("--runs", type=int, default=5,
                   help="full flows per server start; the best throughput and the median publish "
                        "time count (default: 5)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default: 2)")
    p.add_argument("--worker-class", choices=["sync", "gthread"], default="gthread",
                   help="gunicorn worker class (default: gthread, as docs/deployment.md runs it)")
    p.add_argument("--threads", type=int, default=4, help="threads per gthread worker (default: 4)")
    p.add_argument("--gunicorn-tunables", default=GUNICORN_TUNABLES, metavar="TUNABLES",
                   help="GLIBC_TUNABLES for gunicorn, as docs/deployment.md runs it; '' for none "
                        f"(default: {GUNICORN_TUNABLES})")
    p.add_argument("--database-url", help="PostgreSQL server URL; each server start gets its own fresh "
                                          "database there (default: a fresh SQLite file)")
    p.add_argument("--tmpdir", help="where wheels, databases and stored files go (default: the system's)")
    p.add_argument("--cold", action="store_true",
                   help="do not prime the page allocator before each timed copy (see prime())")
    p.add_argument("--output", type=pathlib.Path,
                   help="JSON result file (default: benchmarks/results/upload-<time>.json)")
    args = p.parse_args(argv)
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        p.error("--sizes takes whole MiB, e.g. 32,256")
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not args.sizes or min(args.sizes) <= 0:
        p.error("--sizes needs at least one positive size")
    if unknown := set(args.servers) - {"waitress", "gunicorn"}:
        p.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


# -- the ideal pipeline -------------------------------------------------------------------

def prime(workdir: pathlib.Path, nbytes: int) -> None:
    """Write and delete a scratch file of ``nbytes``, so the next writes reuse its pages.

    On a VM, a page the guest has not used for a few seconds costs the host a fault the
    first time it is touched again: writing into such pages runs at a few hundred MiB/s,
    into just-freed ones at GiB/s. Priming before every timed copy gives the pipeline and
    the servers the same start, and measures the software rather than the hypervisor."""
    scratch = workdir / "prime.scratch"
    zeros = bytes(CHUNK)
    with open(scratch, "wb") as fh:
        for _ in range(-(-nbytes // CHUNK)):
            fh.write(zeros)
    scratch.unlink()  # dirty pages of a deleted file are dropped, never written to disk


def pipeline(path: pathlib.Path, workdir: pathlib.Path, primed: bool, repeat: int = 3) -> tuple[float, float]:
    """Best of ``repeat`` MiB/s (and the least CPU seconds) for read + sha256 + write with
    fsync, in 1 MiB chunks: the least work any server must do to store and verify the file.
    Each copy is a new file, kept until the end as a server keeps what it stores."""
    size = path.stat().st_size
    best, cpu, copies = 0.0, float("inf"), []
    try:
        for n in range(repeat):
            target = workdir / f"pipeline-{n}.copy"
            copies.append(target)
            if primed:
                prime(workdir, size)
            start, cpu_start = time.perf_counter(), time.process_time()
            digest = hashlib.sha256()
            with open(path, "rb") as src, open(target, "wb") as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            digest.hexdigest()
            best = max(best, size / MiB / (time.perf_counter() - start))
            cpu = min(cpu, time.process_time() - cpu_start)
    finally:
        for target in copies:
            target.unlink(missing_ok=True)
    return best, cpu


# -- server processes and their memory ------------------------------------------------------

def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants (gunicorn's master and workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                # The command name may hold spaces and parentheses: split after the last ')'.
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def counters(root: int) -> dict[str, float]:
    """CPU seconds (user, system) and minor page faults of ``root``'s tree so far. CPU time,
    unlike wall time, is not inflated when other processes share the machine; faults show
    memory handed back to the kernel and touched again (expensive on a VM)."""
    user = system = faults = waited = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            faults, user, system = faults + int(fields[7]), user + int(fields[11]), system + int(fields[12])
            # Time runnable but waiting for a CPU, summed over threads (the hashing thread too).
            for task in os.scandir(f"/proc/{pid}/task"):
                with open(f"{task.path}/schedstat") as fh:
                    waited += int(fh.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tick = os.sysconf("SC_CLK_TCK")
    return {"server_user_s": user / tick, "server_system_s": system / tick, "server_minor_faults": faults,
            "server_runqueue_wait_s": waited / 1e9}


def cpu_seconds(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``root``'s tree so far."""
    used = counters(root)
    return used["server_user_s"], used["server_system_s"]


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field (VmRSS, VmHWM) in KiB; 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class MemorySampler(threading.Thread):
    """Polls the server tree's total VmRSS; each process's own peak is its VmHWM, which the
    kernel keeps. Polling is light (a scan of /proc costs ~1.5 ms): the bench shares the CPUs."""

    def __init__(self, root: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_total_kib = 0
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            total = sum(status_kib(pid, "VmRSS") for pid in process_tree(self.root))
            self.peak_total_kib = max(self.peak_total_kib, total)
            self.stopped.wait(self.interval)

    def stop(self) -> dict:
        self.stopped.set()
        self.join()
        hwm = {pid: status_kib(pid, "VmHWM") for pid in process_tree(self.root)}
        return {"peak_process_mib": max(hwm.values()) / 1024, "peak_total_sampled_mib": self.peak_total_kib / 1024,
                "processes": len(hwm)}


@contextlib.contextmanager
def server_process(kind: str, ini: pathlib.Path, port: int, args, workdir: pathlib.Path):
    """Start ``kind`` serving ``ini`` on ``port``; yield (process, base URL); always kill it."""
    if kind == "waitress":
        # `make serve`: pserve runs waitress, which buffers the whole body before the app runs.
        command = [str(BIN / "pserve"), str(ini)]
    else:
        command = [str(BIN / "gunicorn"), "--paste", str(ini), "--bind", f"127.0.0.1:{port}",
                   "--workers", str(args.workers), "--worker-class", args.worker_class,
                   "--timeout", "600", "--log-level", "warning"]
        if args.worker_class == "gthread":
            # Only there: gunicorn turns sync workers given threads into gthread ones.
            command += ["--threads", str(args.threads)]
    log_path = workdir / f"{kind}.log"
    server_tmp = workdir / "server-tmp"
    server_tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(server_tmp)}  # waitress's body buffer stays in our temp dir
    tunables = getattr(args, "gunicorn_tunables", GUNICORN_TUNABLES)  # benchmarks/resumable.py has none
    if kind == "gunicorn" and tunables:
        env["GLIBC_TUNABLES"] = tunables
    with open(log_path, "wb") as log:
        # A session of its own: the whole group (gunicorn's workers too) is killed at the end.
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base + "/simple/", log_path)
        yield proc, base
    finally:
        stop_group(proc)


def wait_ready(proc: subprocess.Popen, url: str, log_path: pathlib.Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer {url} in {timeout} s")
            time.sleep(0.1)


def stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # Workers may outlive the master for a moment; the group must be gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


# -- databases, ini files, users ------------------------------------------------------------

@contextlib.contextmanager
def fresh_database(workdir: pathlib.Path, server_url: str | None):
    """A fresh SQLite file, or a fresh database on the given PostgreSQL server (dropped after)."""
    if not server_url:
        yield f"sqlite:///{workdir / 'upload2.sqlite'}"
        return
    import sqlalchemy as sa

    from pypi_upload2.db import normalize_url

    name = f"upload2_bench_{os.getpid()}_{secrets.token_hex(4)}"
    admin = sa.create_engine(normalize_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield normalize_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def write_ini(workdir: pathlib.Path, database_url: str, port: int, max_bytes: int) -> pathlib.Path:
    ini = workdir / "bench.ini"
    # '%' is ConfigParser's interpolation character (it may appear in a password).
    url = database_url.replace("%", "%%")
    ini.write_text(
        "[app:main]\nuse = egg:pypi-upload2\n"
        f"sqlalchemy.url = {url}\nupload2.storage = {workdir / 'files'}\n"
        f"upload2.max_file_size = {max_bytes}\n\n"
        # Read by pserve only; gunicorn --paste takes its options from the command line.
        f"[server:main]\nuse = egg:waitress#main\nlisten = 127.0.0.1:{port}\n"
        f"max_request_body_size = {max_bytes + MiB}\n"
    )
    return ini


def cli(ini: pathlib.Path, *arguments: str) -> str:
    done = subprocess.run([str(BIN / "pypi-upload2"), "-c", str(ini), *arguments],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"pypi-upload2 {' '.join(arguments)} failed:\n{done.stderr}")
    return done.stdout


def create_user(ini: pathlib.Path) -> str:
    cli(ini, "db", "upgrade")
    return cli(ini, "user", "add", "bench").strip().splitlines()[-1]


# -- the 2.0 flow ---------------------------------------------------------------------------

def call(client: httpx.Client, url: str, body: dict | None, expected: int) -> httpx.Response:
    response = client.post(url, content=json.dumps({"meta": META, **(body or {})}),
                           headers={"Content-Type": CT})
    if response.status_code != expected:
        raise RuntimeError(f"POST {url}: {response.status_code} (expected {expected}): {response.text[:500]}")
    return response


def file_chunks(path: pathlib.Path, progress: Progress, task):
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            progress.advance(task, len(chunk))
            yield chunk


def variants(wheel: pathlib.Path, runs: int) -> list[pathlib.Path]:
    """The wheel under ``runs`` filenames that differ only in the Python tag (hard links):
    each run publishes a new file of the same release, since filenames are never reused."""
    paths = []
    for n in range(runs):
        path = wheel.with_name(wheel.name.replace("-py3-none-any", f"-py3{n}-none-any"))
        if not path.exists():
            os.link(wheel, path)
        paths.append(path)
    return paths


def upload_flow(base: str, token: str, wheels: list[pathlib.Path], digest: str, progress: Progress,
                label: str, before_upload, server_counters) -> dict:
    """The full flow once per wheel: create a session (a new one for the published release
    after the first), create a file upload session, POST the bytes, complete, publish."""
    timings = []
    with httpx.Client(auth=("__token__", token), timeout=httpx.Timeout(900)) as client:
        for run, wheel in enumerate(wheels, 1):
            size = wheel.stat().st_size
            version = wheel.name.split("-")[1]
            session = call(client, base + "/2.0/", {"name": PROJECT, "version": version}, 201).json()
            file_session = call(client, session["links"]["upload"], {
                "filename": wheel.name, "size": size, "hashes": {"sha256": digest},
                "mechanism": "http-post-bytes"}, 202).json()
            before_upload(size)
            task = progress.add_task(f"{label} run {run}/{len(wheels)}", total=size)
            before, start, client_cpu = server_counters(), time.perf_counter(), time.process_time()
            sent = client.post(file_session["mechanism"]["file_url"], content=file_chunks(wheel, progress, task),
                               headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
            transferred, client_cpu = time.perf_counter(), time.process_time() - client_cpu
            if sent.status_code != 204:
                raise RuntimeError(f"POST bytes: {sent.status_code}: {sent.text[:500]}")
            completed = call(client, file_session["links"]["complete"], None, 201).json()
            done = time.perf_counter()
            used = {key: value - before[key] for key, value in server_counters().items()}
            progress.remove_task(task)
            if completed["status"] != "completed":
                raise RuntimeError(f"the file is {completed['status']} after complete")
            published = call(client, session["links"]["publish"], None, 201).json()
            publish_s = time.perf_counter() - done
            if published["status"] != "published":
                raise RuntimeError(f"the session is {published['status']} after publish")
            timings.append({"transfer_s": transferred - start, "complete_s": done - transferred,
                            "mib_s": size / MiB / (done - start), "publish_s": publish_s, "client_cpu_s": client_cpu,
                            "server_cpu_s": used["server_user_s"] + used["server_system_s"], **used})
        # The published files are the ones uploaded, bit for bit (by their digest).
        index = client.get(f"{base}/simple/{PROJECT}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        listed = {f["filename"]: f["hashes"]["sha256"] for f in index.json()["files"]}
        if any(listed.get(w.name) != digest for w in wheels):
            raise RuntimeError("the public index does not list every uploaded file with its sha256")
    best = max(timings, key=lambda t: t["mib_s"])
    return {"runs": timings, "best_mib_s": best["mib_s"], "best_transfer_s": best["transfer_s"],
            "best_complete_s": best["complete_s"],
            "server_cpu_s": min(t["server_cpu_s"] for t in timings),
            "server_minor_faults": statistics.median(t["server_minor_faults"] for t in timings),
            "publish_s": statistics.median(t["publish_s"] for t in timings)}


def measure(kind: str, size_mib: int, wheel: pathlib.Path, digest: str, args, workdir: pathlib.Path,
            progress: Progress) -> dict:
    """A fresh database and server for one size; the flow's figures and the server's memory."""
    with tempfile.TemporaryDirectory(prefix=f"{kind}-{size_mib}-", dir=workdir) as tmp:
        tmp = pathlib.Path(tmp)
        port = free_port()
        with fresh_database(tmp, args.database_url) as url:
            ini = write_ini(tmp, url, port, max(args.sizes) * MiB + MiB)
            token = create_user(ini)
            with server_process(kind, ini, port, args, tmp) as (proc, base):
                idle = sum(status_kib(pid, "VmRSS") for pid in process_tree(proc.pid)) / 1024
                sampler = MemorySampler(proc.pid)
                sampler.start()
                try:
                    # Room for the server's own copy of the body too (waitress buffers it in a file).
                    before_upload = (lambda n: prime(tmp, 2 * n)) if not args.cold else (lambda n: None)
                    result = upload_flow(base, token, variants(wheel, args.runs), digest, progress,
                                         f"{kind} {size_mib} MiB", before_upload,
                                         lambda: counters(proc.pid))
                finally:
                    memory = sampler.stop()
    return {**result, **memory, "idle_total_mib": idle}


# -- report ---------------------------------------------------------------------------------

def evaluate(results: dict, sizes: list[int], pipelines: dict[int, float]) -> dict:
    """Each server's verdict on the three targets."""
    verdicts = {}
    small, large = sizes[0], sizes[-1]
    for kind, by_size in results.items():
        ratios = {s: by_size[s]["best_mib_s"] / pipelines[s] for s in sizes}
        verdict = {"throughput": all(r >= THROUGHPUT_RATIO for r in ratios.values()), "ratios": ratios}
        if large != small:
            growth = by_size[large]["peak_process_mib"] - by_size[small]["peak_process_mib"]
            # Copying the extra bytes at the pipeline's speed: what a publish that moved bytes would cost.
            copy_s = (large - small) / pipelines[large]
            publish_growth = by_size[large]["publish_s"] - by_size[small]["publish_s"]
            publish_limit = max(PUBLISH_SHARE * copy_s, PUBLISH_FLOOR_S)
            verdict |= {"rss_growth_mib": growth, "rss": growth < RSS_GROWTH_MIB,
                        "publish_growth_s": publish_growth, "publish_limit_s": publish_limit,
                        "publish": publish_growth < publish_limit}
        verdicts[kind] = verdict
    return verdicts


def yes(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]not met[/]"


def report(results: dict, verdicts: dict, sizes: list[int], pipelines: dict[int, float],
           pipeline_cpu: dict[int, float]) -> None:
    table = Table(title="Upload 2.0 (http-post-bytes): transfer + complete, then publish")
    for column in ("server", "size", "MiB/s", "ratio", "transfer s", "complete s", "CPU s", "faults",
                   "publish s", "idle RSS MiB", "peak RSS MiB"):
        table.add_column(column, justify="right" if column != "server" else "left")
    for s in sizes:
        table.add_row("pipeline", f"{s} MiB", f"{pipelines[s]:.0f}", "1.00", "", "", f"{pipeline_cpu[s]:.2f}",
                      "", "", "", "")
    for kind, by_size in results.items():
        for s in sizes:
            r = by_size[s]
            table.add_row(kind, f"{s} MiB", f"{r['best_mib_s']:.0f}", f"{r['best_mib_s'] / pipelines[s]:.2f}",
                          f"{r['best_transfer_s']:.2f}", f"{r['best_complete_s']:.3f}", f"{r['server_cpu_s']:.2f}",
                          f"{r['server_minor_faults'] / 1000:.0f}k", f"{r['publish_s']:.3f}",
                          f"{r['idle_total_mib']:.0f}", f"{r['peak_process_mib']:.0f}")
    console.print(table)
    targets = Table(title="Targets")
    for column in ("server", f"throughput ≥ {THROUGHPUT_RATIO} × pipeline",
                   f"RSS growth < {RSS_GROWTH_MIB} MiB", "publish independent of size"):
        targets.add_column(column)
    for kind, v in verdicts.items():
        rss = publish = "n/a (one size)"
        if "rss" in v:
            rss = f"{yes(v['rss'])} ({v['rss_growth_mib']:+.1f} MiB)"
            publish = (f"{yes(v['publish'])} ({v['publish_growth_s'] * 1000:+.0f} ms, "
                       f"limit {v['publish_limit_s'] * 1000:.0f} ms)")
        throughput = "; ".join(f"{yes(r >= THROUGHPUT_RATIO)} at {s} MiB ({r:.2f})" for s, r in v["ratios"].items())
        targets.add_row(kind, throughput, rss, publish)
    console.print(targets)


def machine() -> dict:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform()}


def output_path(args, name: str) -> pathlib.Path:
    """Where a benchmark writes its JSON: ``--output``, or benchmarks/results/<name>-<time>.json."""
    return args.output or ROOT / "benchmarks" / "results" / (
        f"{name}-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")


def main(argv=None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so servers are killed and temp dirs removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for tool in ("pserve", "gunicorn", "pypi-upload2"):
        if not (BIN / tool).exists():
            console.print(f"[red]{BIN / tool} is missing: run with the project's virtualenv (make bench)[/]")
            return 2
    output = output_path(args, "upload")
    results: dict[str, dict[int, dict]] = {kind: {} for kind in args.servers}
    load_before = os.getloadavg()  # other work on the machine skews wall-clock figures
    with tempfile.TemporaryDirectory(prefix="upload2-bench-", dir=args.tmpdir) as workdir:
        workdir = pathlib.Path(workdir)
        wheels, digests, pipelines, pipeline_cpu = {}, {}, {}, {}
        with console.status("building wheels and measuring the pipeline"):
            for s in args.sizes:
                wheels[s] = build_wheel(workdir, PROJECT, f"{s}.0", padding=s * MiB)
                digests[s] = sha256_file(wheels[s])
                pipelines[s], pipeline_cpu[s] = pipeline(wheels[s], workdir, primed=not args.cold)
                console.print(f"pipeline {s} MiB: {pipelines[s]:.0f} MiB/s "
                              f"(wheel {wheels[s].stat().st_size / MiB:.1f} MiB)")
        columns = (*Progress.get_default_columns()[:1], BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=console, transient=True, refresh_per_second=4) as progress:
            for kind in args.servers:
                for s in args.sizes:
                    r = measure(kind, s, wheels[s], digests[s], args, workdir, progress)
                    results[kind][s] = r
                    progress.console.print(
                        f"{kind} {s} MiB: {r['best_mib_s']:.0f} MiB/s ({r['best_mib_s'] / pipelines[s]:.2f} × "
                        f"pipeline), peak RSS {r['peak_process_mib']:.0f} MiB, publish {r['publish_s'] * 1000:.0f} ms")
    verdicts = evaluate(results, args.sizes, pipelines)
    report(results, verdicts, args.sizes, pipelines, pipeline_cpu)
    load_after = os.getloadavg()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv]),
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": load_after},
        "options": {"sizes_mib": args.sizes, "servers": args.servers, "runs": args.runs, "workers": args.workers,
                    "worker_class": args.worker_class, "threads": args.threads,
                    "gunicorn_tunables": args.gunicorn_tunables,
                    "primed": not args.cold, "database": "postgresql" if args.database_url else "sqlite"},
        "targets": {"throughput_ratio": THROUGHPUT_RATIO, "rss_growth_mib": RSS_GROWTH_MIB,
                    "publish_share_of_copy_time": PUBLISH_SHARE, "publish_floor_s": PUBLISH_FLOOR_S},
        "pipeline_mib_s": pipelines,
        "pipeline_cpu_s": pipeline_cpu,
        "results": results,
        "verdicts": verdicts,
    }, indent=2) + "\n")
    console.print(f"results: {os.path.relpath(output)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers are stopped and the temp dirs gone by now
        sys.exit(130)
