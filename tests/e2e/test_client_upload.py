"""The release client (``pypi-upload2 upload`` / ``session``) as a user runs it: a real
process talking HTTP to a real server process. Helpers here serve the other client tests."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from tests.conftest import build_sdist, build_wheel, free_port, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


# -- helpers shared by the client tests ------------------------------------------------------------

@pytest.fixture
def make_server(tmp_path, database_url, storage_dir, storage_settings, dbsession):
    """Start a server process with extra app settings, or another app (``use``); returns its URL.
    Its storage is the test's (``wsgi_app``'s too, which may do a worker's part)."""
    procs = []

    def start(settings: dict | None = None, use: str = "egg:pypi-upload2") -> str:
        port = free_port()
        ini = tmp_path / f"server-{port}.ini"
        app = {"sqlalchemy.url": database_url, "upload2.storage": str(storage_dir), **storage_settings,
               **(settings or {})}
        ini.write_text(
            f"[app:main]\nuse = {use}\n" + "".join(f"{k} = {v}\n" for k, v in app.items())
            + f"\n[server:main]\nuse = egg:waitress#main\nlisten = 127.0.0.1:{port}\n"
            "max_request_body_size = 1073741824\n")
        env = {**os.environ, "PYTHONPATH": ROOT}  # a ``call:tests...`` app is importable
        proc = subprocess.Popen([os.path.join(BIN, "pserve"), str(ini)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/simple/")
        return base

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def client_env(tmp_path, token: str | None = None, **extra) -> dict:
    """A clean environment: no .pypirc (HOME is empty), no twine or pip settings."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPLOAD2_", "TWINE_", "PIP_"))}
    env.update({"HOME": str(home), "PIP_CONFIG_FILE": os.devnull})
    if token:
        env["UPLOAD2_TOKEN"] = token
    env.update(extra)
    return env


def run_client(args, env, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(BIN, "pypi-upload2"), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def run_json(args, env, expect: int = 0) -> dict:
    done = run_client([*args, "--json"], env)
    assert done.returncode == expect, done.stdout + done.stderr
    return json.loads(done.stdout)


def published(base: str, name: str) -> dict[str, bytes]:
    """The public index's files of ``name``, downloaded: filename -> bytes."""
    page = httpx.get(f"{base}/simple/{name}/", headers=SIMPLE_JSON)
    if page.status_code == 404:
        return {}
    assert page.status_code == 200, page.text
    files = {}
    for entry in page.json()["files"]:
        data = httpx.get(httpx.URL(f"{base}/simple/{name}/").join(entry["url"])).content
        assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"]
        files[entry["filename"]] = data
    return files


class Proxy:
    """A TCP proxy on the loopback interface between the client and the server. It counts
    the bytes sent towards the server; past ``cut_after`` it closes that connection once
    (``mode="cut"``), or stops forwarding it until ``release()`` (``mode="hold"``). Or, from
    ``fail(mode)`` until ``restore()``, it does so to every connection, open or new: a server
    gone away, or one that stalls (a held connection is closed when restored: its client gave
    up on it). Bounded: at most 128 connections (a pooling client reconnects often behind a
    failing proxy), every socket closed by ``close()``."""

    def __init__(self, upstream: str, cut_after: float = float("inf"), mode: str = "cut"):
        self.upstream_port = httpx.URL(upstream).port
        self.cut_after, self.mode = cut_after, mode
        self.failing: str | None = None
        self.restored = threading.Event()
        self.sent = 0
        self.triggered = threading.Event()
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.closed = threading.Event()
        self._spawn(self._accept)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            if len(self.sockets) >= 256 or self.failing == "cut":
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, server]
            self._spawn(self._pump, client, server, True)
            self._spawn(self._pump, server, client, False)

    def _pump(self, source: socket.socket, target: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                if self.failing:
                    if self.failing == "hold":  # nothing goes on; restored, it is dropped
                        self.restored.wait(60)
                    for sock in (source, target):
                        sock.shutdown(socket.SHUT_RDWR)
                    return
                if upstream and not self.triggered.is_set():
                    with self.lock:
                        self.sent += len(data)
                        trigger = self.sent >= self.cut_after and not self.triggered.is_set()
                        if trigger:
                            self.triggered.set()
                    if trigger and self.mode == "cut":
                        target.sendall(data[: len(data) // 2])
                        for sock in (source, target):
                            sock.shutdown(socket.SHUT_RDWR)
                        return
                    if trigger:
                        self.released.wait(60)
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def release(self) -> None:
        self.released.set()

    def fail(self, mode: str) -> None:
        self.restored.clear()
        self.failing = mode
        if mode == "cut":
            self._shutdown()

    def restore(self) -> None:
        self.failing = None
        self.restored.set()

    def _shutdown(self) -> None:
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.closed.set()
        self.released.set()
        self.listener.close()
        self._shutdown()
        for sock in self.sockets:
            sock.close()
        for thread in self.threads:
            thread.join(10)


# -- tests -----------------------------------------------------------------------------------------

def test_two_releases_in_one_command_are_two_sessions_uploaded_in_parallel_and_published(
        server, make_user, dist_dir, tmp_path):
    paths = [build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0"),
             build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any"),
             build_wheel(dist_dir, "foo", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64", padding=200_000),
             build_wheel(dist_dir, "Bar.Baz", "2.0")]
    env = client_env(tmp_path, make_user("alice"))

    report = run_json(["upload", "--repository-url", f"{server}/legacy/", "--parallel", "4", *paths], env)

    assert (report["protocol"], report["ok"], report["stage"], report["error"]) == ("2.0", True, False, None)
    assert report["repository"] == f"{server}/legacy/"
    sessions = {(s["name"], s["version"]): s for s in report["sessions"]}
    assert sorted(sessions) == [("bar-baz", "2.0"), ("foo", "1.0")]
    for session in sessions.values():
        assert session["status"] == "published" and session["created"] is True
        assert session["session"].startswith(f"{server}/2.0/sessions/")
        assert session["stage"] is None  # published: the stage answers 404 now
    assert sessions["foo", "1.0"]["session"] != sessions["bar-baz", "2.0"]["session"]
    files = {f["filename"]: f for s in report["sessions"] for f in s["files"]}
    assert sorted(files) == sorted(p.name for p in paths)
    for path in paths:
        entry = files[path.name]
        assert entry["status"] == "completed" and entry["mechanism"] == "http-post-bytes"
        assert (entry["size"], entry["sha256"]) == (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        assert entry["attempts"] == 1 and entry["error"] is None

    public = {**published(server, "foo"), **published(server, "bar-baz")}
    assert public == {p.name: p.read_bytes() for p in paths}
    # The session URLs stay readable: the server reports the final state.
    status = run_json(["session", "status", sessions["foo", "1.0"]["session"]], env)
    assert status["session"]["status"] == "published"
    assert sorted(status["session"]["files"]) == sorted(p.name for p in paths[:4])


def test_stage_prints_how_to_test_then_session_publish_publishes(server, make_user, dist_dir, tmp_path):
    paths = [build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0")]
    env = client_env(tmp_path, make_user("alice"))

    done = run_client(["upload", "--repository-url", f"{server}/legacy/", "--stage", *paths], env)

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    # Not a terminal: plain lines, no progress bars, nothing but text.
    assert "\x1b" not in done.stdout and "━" not in done.stdout
    assert any(line.startswith("foo-1.0.tar.gz: uploading") and line.endswith("via http-post-bytes") for line in lines)
    assert "foo-1.0-py3-none-any.whl: completed" in lines
    staged = {key.strip(): value.strip() for key, _, value in (
        line.partition(": ") for line in lines[lines.index("foo 1.0 is staged, not published:") + 1:])}
    session, stage = staged["session"], staged["stage"]
    assert staged["test"] == f"pip install --index-url {stage} --extra-index-url {server}/simple/ foo==1.0"
    assert staged["publish"] == f"pypi-upload2 session publish {session}"
    assert staged["cancel"] == f"pypi-upload2 session cancel {session}"
    assert published(server, "foo") == {}
    listing = httpx.get(stage + "foo/", headers=SIMPLE_JSON).json()
    assert sorted(f["filename"] for f in listing["files"]) == sorted(p.name for p in paths)

    status = run_client(["session", "status", session], env)
    assert status.returncode == 0, status.stderr
    assert "status:     open" in status.stdout.splitlines()
    assert f"  {paths[0].name}  completed" in status.stdout.splitlines()

    before = run_json(["session", "status", session], env)["session"]["expires-at"]
    extended = run_json(["session", "extend", session, "--extend-for", str(10 * 24 * 3600)], env)
    assert extended["session"]["expires-at"] > before

    publish = run_client(["session", "publish", session], env)
    assert publish.returncode == 0, publish.stdout + publish.stderr
    assert "status:     published" in publish.stdout.splitlines()
    assert published(server, "foo") == {p.name: p.read_bytes() for p in paths}
    assert run_client(["session", "publish", session], env).returncode == 0  # a re-run finds it published
    too_late = run_client(["session", "cancel", session], env)
    assert too_late.returncode == 1 and "(HTTP 409)" in too_late.stdout


def test_a_problem_is_shown_with_its_errors_not_retried_and_no_secret_is_printed(
        server, make_user, dist_dir, tmp_path):
    alice = make_user("alice")
    bob = make_user("bob")
    first = build_wheel(dist_dir, "foo", "1.0")
    first_upload = run_client(["upload", "--repository-url", f"{server}/legacy/", first], client_env(tmp_path, alice))
    assert first_upload.returncode == 0

    # bob may not upload to alice's project: 403, shown as title, detail and each error.
    wheel = build_wheel(dist_dir, "foo", "1.1")
    done = run_client(["upload", "--repository-url", f"{server}/legacy/", "-u", "__token__", "-p", bob, wheel],
                      client_env(tmp_path))
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "(HTTP 403)" in output and "- " in output
    assert "retrying" not in output
    assert bob not in output and bob.rsplit("-", 1)[-1] not in output

    # A file the server refuses at completion: the problem is shown and the session canceled.
    broken = dist_dir / "foo-1.2-py3-none-any.whl"
    broken.write_bytes(b"not a zip file at all")
    report = run_json(["upload", "--repository-url", f"{server}/legacy/", broken], client_env(tmp_path, alice),
                      expect=1)
    (session,) = report["sessions"]
    (entry,) = session["files"]
    assert entry["status"] == "error" and entry["attempts"] == 1
    assert entry["error"]["status"] == 400 and entry["error"]["title"] and entry["error"]["errors"]
    assert session["status"] == "canceled"
    assert alice not in json.dumps(report)


def test_an_open_session_is_refused_unless_joined(server, make_user, dist_dir, tmp_path):
    env = client_env(tmp_path, make_user("alice"))
    sdist, wheel = build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0")
    staged = run_json(["upload", "--repository-url", f"{server}/legacy/", "--stage", sdist], env)
    url = staged["sessions"][0]["session"]

    refused = run_client(["upload", "--repository-url", f"{server}/legacy/", wheel], env)
    assert refused.returncode == 1
    assert f"already open: {url}" in refused.stdout and "--join" in refused.stdout

    joined = run_json(["upload", "--repository-url", f"{server}/legacy/", "--join", wheel], env)
    assert joined["sessions"][0]["session"] == url and joined["sessions"][0]["created"] is False
    assert joined["sessions"][0]["status"] == "published"
    assert published(server, "foo") == {sdist.name: sdist.read_bytes(), wheel.name: wheel.read_bytes()}


def test_deferred_completion_and_publish_are_polled_until_they_settle(make_server, make_user, dist_dir, tmp_path):
    # A session lifetime under the client's margin: it asks for an extension before each file.
    base = make_server({"upload2.publish_mode": "deferred", "upload2.session_lifetime": "600"})
    env = client_env(tmp_path, make_user("alice"))
    paths = [build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0", padding=300_000)]

    # --resumable: its completion is deferred (the server hashes the appended file in a task).
    report = run_json(["upload", "--repository-url", f"{base}/legacy/", "--resumable", "--chunk-size", "64K",
                       *paths], env)

    (session,) = report["sessions"]
    assert session["status"] == "published"
    assert {f["mechanism"] for f in session["files"]} == {"vnd-upload2-resumable-v1"}
    expires = datetime.datetime.strptime(session["expires-at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert expires - datetime.datetime.now(datetime.UTC) > datetime.timedelta(seconds=1800)
    assert published(base, "foo") == {p.name: p.read_bytes() for p in paths}


@pytest.mark.parametrize("sig, stage", [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c-cancels", "ctrl-c-stage-keeps", "sigterm-cancels"])
def test_ctrl_c_cancels_the_sessions_it_created_unless_staging(server, make_user, dist_dir, tmp_path, sig, stage):
    env = client_env(tmp_path, make_user("alice"))
    wheel = build_wheel(dist_dir, "foo", "1.0", padding=2_000_000)
    proxy = Proxy(server, cut_after=1_000_000, mode="hold")
    try:
        args = ["upload", "--repository-url", f"{proxy.url}/legacy/", "--json", wheel] + (["--stage"] if stage else [])
        proc = subprocess.Popen([os.path.join(BIN, "pypi-upload2"), *map(str, args)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert proxy.triggered.wait(120), "the upload never got going"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proxy.close()
    assert proc.returncode == 130, out + err
    report = json.loads(out)
    (session,) = report["sessions"]
    assert report["error"] == {"status": None, "title": "interrupted", "detail": "", "errors": []}
    assert report["ok"] is False and report["timed-out"] is False
    url = session["session"].replace(proxy.url, server)  # the links name the host the client asked
    state = httpx.get(url, auth=("__token__", env["UPLOAD2_TOKEN"])).json()
    if stage:
        assert session["status"] == state["status"] == "open"
        assert "pypi-upload2 session cancel" in err
    else:
        assert session["status"] == state["status"] == "canceled"
        assert "foo 1.0: session canceled" in err


def test_a_refused_publish_leaves_the_release_staged_for_a_retry(make_server, make_user, dist_dir, tmp_path):
    # The project quota is checked when publishing: these files fit no quota of 1 kB.
    base = make_server({"upload2.project_quota": "1000"})
    env = client_env(tmp_path, make_user("alice"))
    paths = [build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0", padding=2000)]

    done = run_client(["upload", "--repository-url", f"{base}/legacy/", *paths], env)

    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.startswith("error: foo 1.0: publishing failed: ") for line in lines), done.stdout
    session = next(line.split(": ", 1)[1] for line in lines if line.startswith("  session: "))
    state = httpx.get(session, auth=("__token__", env["UPLOAD2_TOKEN"])).json()
    assert state["status"] == "open" and sorted(state["files"]) == sorted(p.name for p in paths)
    assert published(base, "foo") == {}
