"""Several processes on PostgreSQL and Redis: gunicorn (two workers) serving the app and a
real Celery worker with beat (``celery -A pypi_upload2.tasks worker -B``), each a subprocess
reading the same ini file. The tests poll status URLs, as a client would; no timing is asserted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import sqlalchemy as sa

from pypi_upload2.mechanisms.resumable import IDENTIFIER
from pypi_upload2.models import FileUploadSession, PublishingSession
from pypi_upload2.builtin.models import Filename, Release, ReleaseFile
from tests.conftest import basic, build_sdist, build_wheel, free_port
from tests.functional.test_resumable import PARTIAL, gunicorn, raw_patch_start, read_response

BIN = os.path.dirname(sys.executable)
CT = "application/vnd.pypi.upload.v2+json"
META = {"api-version": "2.0"}
MiB = 1024 * 1024


@pytest.fixture
def redis_url(database_url):
    url = os.environ.get("UPLOAD2_TEST_REDIS_URL")
    if not url or not os.environ.get("UPLOAD2_TEST_DATABASE_URL"):
        pytest.skip("needs Redis and PostgreSQL (UPLOAD2_TEST_REDIS_URL, UPLOAD2_TEST_DATABASE_URL)")
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()  # this Redis's test database (CI uses db 15): no messages of earlier runs
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def ini(tmp_path, database_url, storage_dir, redis_url, dbsession):
    # After dbsession: the processes stop before its teardown empties the tables.
    path = tmp_path / "stack.ini"
    path.write_text(
        "[app:main]\nuse = egg:pypi-upload2\n"
        f"sqlalchemy.url = {database_url}\nupload2.storage = {storage_dir}\n"
        f"celery.broker_url = {redis_url}\n"
        "upload2.publish_mode = deferred\n"
        # Beat every second; processing counts as stuck after two.
        "upload2.sweep_interval = 1\nupload2.processing_deadline = 2\n"
    )
    return path


class Worker:
    """``celery -A pypi_upload2.tasks worker -B`` in a process group of its own, with ``env``
    over this process's environment."""

    def __init__(self, ini, tmp_path, env: dict | None = None):
        self.ini, self.tmp_path, self.env, self.proc, self.runs = ini, tmp_path, env or {}, None, 0

    def start(self) -> None:
        self.runs += 1
        self.log = self.tmp_path / f"worker-{self.runs}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [os.path.join(BIN, "celery"), "-A", "pypi_upload2.tasks", "worker", "-B",
                 "-s", str(self.tmp_path / "beat-schedule"), "--concurrency", "2", "--loglevel", "INFO",
                 "--without-gossip", "--without-mingle", "--hostname", f"test{self.runs}@%h"],
                env={**os.environ, **self.env, "UPLOAD2_CONFIG": str(self.ini)}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_until(lambda: b" ready." in self.log.read_bytes(), what=f"the worker to start:\n{self.tail()}",
                   proc=self.proc)

    def kill(self) -> None:
        """SIGKILL to the worker, its pool processes and its beat, all at once."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture
def worker(ini, tmp_path):
    w = Worker(ini, tmp_path)
    w.start()
    yield w
    w.kill()  # the whole process group: nothing of it outlives its test


@pytest.fixture
def base(ini):
    with gunicorn(ini, free_port()) as url:
        yield url


@pytest.fixture
def token(make_user):
    return make_user("alice")


@pytest.fixture
def client(base, token):
    with httpx.Client(auth=("__token__", token), timeout=60) as c:
        yield c


def wait_until(condition, what="a condition", timeout: float = 60.0, proc=None):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return result


def call(client, url, body=None, expected=None) -> httpx.Response:
    response = client.post(url, content=json.dumps({"meta": META, **(body or {})}), headers={"Content-Type": CT})
    assert expected is None or response.status_code == expected, response.text
    return response


def upload_wheel(client, session, wheel) -> None:
    """One file through ``http-post-bytes``: created, sent, completed."""
    data = wheel.read_bytes()
    file_session = call(client, session["links"]["upload"], {
        "filename": wheel.name, "size": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
        "mechanism": "http-post-bytes"}, 202).json()
    client.post(file_session["mechanism"]["file_url"], content=data,
                headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    call(client, file_session["links"]["complete"], expected=201)


def settled(client, url, transient="processing") -> dict:
    """Poll a status URL, as a client waiting on a 202 does, until it leaves ``transient``."""
    def poll():
        response = client.get(url)
        body = response.json()
        return body if body["status"] != transient else None
    return wait_until(poll, what=f"{url} to leave {transient}")


def start_resumable(client, session, path, sha256=None) -> dict:
    data = path.read_bytes()
    return call(client, session["links"]["upload"], {
        "filename": path.name, "size": len(data), "hashes": {"sha256": sha256 or hashlib.sha256(data).hexdigest()},
        "mechanism": IDENTIFIER}, 202).json()


def append(client, upload, data: bytes, offset: int, complete: bool) -> httpx.Response:
    return client.patch(upload["mechanism"]["file_url"], content=data, headers={
        "Content-Type": PARTIAL, "Upload-Offset": str(offset), "Upload-Complete": "?1" if complete else "?0"})


def send_rest(client, upload, data: bytes, chunk: int) -> None:
    """Resume from the offset HEAD reports and append the rest, retrying a refused append
    (an earlier append of ours may still be ending on the server) from a fresh HEAD."""
    while True:
        state = client.head(upload["mechanism"]["file_url"])
        offset = int(state.headers["Upload-Offset"])
        if state.headers["Upload-Complete"] == "?1":
            return
        part = data[offset:offset + chunk]
        response = append(client, upload, part, offset, offset + len(part) == len(data))
        assert response.status_code in (204, 409), response.text


def half_of_second_append(base, token, upload, data: bytes) -> socket.socket:
    """A second 1 MiB append whose body stops halfway, its connection left open."""
    return raw_patch_start(base, upload["mechanism"]["file_url"].removeprefix(base), {
        **basic(token), "Content-Type": PARTIAL, "Upload-Offset": str(MiB), "Upload-Complete": "?0"},
        data[MiB:MiB + MiB // 2], MiB)


def test_resumable_upload_interrupted_resumed_verified_then_deferred_publish(worker, base, client, token,
                                                                           dist_dir):
    wheel = build_wheel(dist_dir, "foo", "1.0", padding=3 * MiB)
    data = wheel.read_bytes()
    session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
    upload = start_resumable(client, session, wheel)
    assert append(client, upload, data[:MiB], 0, False).status_code == 204
    # The second chunk breaks off halfway: the client's side of the connection ends mid-body.
    sock = half_of_second_append(base, token, upload, data)
    sock.shutdown(socket.SHUT_WR)
    read_response(sock)
    sock.close()
    # What arrived is kept: HEAD reports it once the broken append has ended.
    wait_until(lambda: client.head(upload["mechanism"]["file_url"]).headers["Upload-Offset"] == str(MiB + MiB // 2),
               what="the interrupted append's bytes to be kept")
    send_rest(client, upload, data, MiB)
    completed = call(client, upload["links"]["complete"], expected=202)
    assert completed.json()["status"] == "processing" and "Retry-After" in completed.headers
    assert settled(client, upload["links"]["file-upload-session"])["status"] == "completed"

    published = call(client, session["links"]["publish"], expected=202)
    assert published.headers["Location"] == session["links"]["session"]
    assert settled(client, session["links"]["session"])["status"] == "published"
    index = client.get(f"{base}/simple/foo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    assert [(f["filename"], f["hashes"]["sha256"]) for f in index["files"]] == [
        (wheel.name, hashlib.sha256(data).hexdigest())]


def test_a_wrong_hash_ends_in_error(worker, base, client, dist_dir):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
    upload = start_resumable(client, session, wheel, sha256="0" * 64)
    send_rest(client, upload, wheel.read_bytes(), 4096)
    call(client, upload["links"]["complete"], expected=202)
    status = settled(client, upload["links"]["file-upload-session"])
    assert status["status"] == "error" and "sha256 mismatch" in status["notices"][0]


def test_a_deferred_publish_hitting_a_conflict_ends_in_error_then_is_fixed(worker, base, client, dist_dir,
                                                                         dbsession):
    def stage(*paths) -> dict:
        session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
        for path in paths:
            upload = start_resumable(client, session, path)
            send_rest(client, upload, path.read_bytes(), 4096)
            call(client, upload["links"]["complete"], expected=202)
            assert settled(client, upload["links"]["file-upload-session"])["status"] == "completed"
        return session

    # foo 1.0 is published with a first wheel; a second session stages its sdist and a wheel.
    first = build_wheel(dist_dir, "foo", "1.0")
    first_session = stage(first)
    call(client, first_session["links"]["publish"], expected=202)
    assert settled(client, first_session["links"]["session"])["status"] == "published"
    taken, other = build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any")
    session = stage(taken, other)
    # Meanwhile another door of the index publishes an sdist of 1.0 (under another filename,
    # so the publish request's filename reservation succeeds): the task's publish then finds
    # the release's one sdist taken.
    release_id = dbsession.scalar(sa.select(Release.id))
    dbsession.add_all([Filename(filename="Foo-1.0.tar.gz"),
                       ReleaseFile(release_id=release_id, filename="Foo-1.0.tar.gz", packagetype="sdist", size=1,
                                   sha256="0" * 64, blob_key="elsewhere", published_at=sa.func.now())])
    dbsession.commit()
    call(client, session["links"]["publish"], expected=202)
    status = settled(client, session["links"]["session"])
    assert status["status"] == "error"
    assert any(taken.name in notice for notice in status["notices"])
    assert status["files"][taken.name]["notices"] and not status["files"][other.name]["notices"]
    # The reservation is released: no filename is held without being published.
    reserved = dbsession.scalars(sa.select(Filename.filename).where(
        Filename.filename.not_in(sa.select(ReleaseFile.filename)))).all()
    dbsession.rollback()
    assert reserved == []
    client.delete(status["files"][taken.name]["link"]).raise_for_status()
    call(client, session["links"]["publish"], expected=202)
    assert settled(client, session["links"]["session"])["status"] == "published"
    listed = client.get(f"{base}/simple/foo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    assert [f["filename"] for f in listed["files"] if f["hashes"]["sha256"] != "0" * 64] == sorted(
        [first.name, other.name])


def waiting_on_a_lock(dbsession) -> bool:
    found = dbsession.scalar(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND wait_event_type = 'Lock'"))
    dbsession.rollback()
    return found > 0


def test_a_worker_killed_mid_verification_leaves_work_a_restarted_worker_finishes(worker, base, client, dist_dir,
                                                                                 engine, dbsession):
    wheel = build_wheel(dist_dir, "foo", "1.0", padding=2 * MiB)
    session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
    upload = start_resumable(client, session, wheel)
    send_rest(client, upload, wheel.read_bytes(), MiB)
    with engine.connect() as holder:
        # Hold the session's row: the worker hashes and checks the file, then waits to settle it.
        holder.execute(sa.select(PublishingSession.id).where(
            PublishingSession.token == session["session-token"]).with_for_update())
        call(client, upload["links"]["complete"], expected=202)
        wait_until(lambda: waiting_on_a_lock(dbsession), what="the worker to reach the end of its verification")
        worker.kill()
        holder.rollback()
    [row] = dbsession.scalars(sa.select(FileUploadSession)).all()
    dbsession.rollback()
    assert row.status == "processing"  # the killed worker settled nothing
    worker.start()
    assert settled(client, upload["links"]["file-upload-session"])["status"] == "completed"
    assert b"verifying" in worker.log.read_bytes()


def test_expiry_cancels_and_purges_an_expired_session_and_frees_its_new_name(worker, base, client, dist_dir,
                                                                              dbsession, storage_dir, make_user):
    wheel = build_wheel(dist_dir, "newname", "1.0")
    session = call(client, base + "/2.0/", {"name": "newname", "version": "1.0"}, 201).json()
    upload = start_resumable(client, session, wheel)
    send_rest(client, upload, wheel.read_bytes(), 4096)
    call(client, upload["links"]["complete"], expected=202)
    settled(client, upload["links"]["file-upload-session"])
    assert any(p.is_file() for p in storage_dir.rglob("*"))
    dbsession.execute(sa.update(PublishingSession).values(expires_at=sa.func.now() - sa.text("interval '1 minute'")))
    dbsession.commit()
    status = settled(client, session["links"]["session"], transient="open")
    assert status["status"] == "canceled"
    wait_until(lambda: not any(p.is_file() for p in storage_dir.rglob("*")), what="the bytes to be purged")
    with httpx.Client(auth=("__token__", make_user("bob")), timeout=60) as bob:
        assert call(bob, base + "/2.0/", {"name": "newname", "version": "1.0"}).status_code == 201
    # Past the retention period the canceled session is forgotten: its status URL answers 404.
    dbsession.execute(sa.update(PublishingSession).where(PublishingSession.token == session["session-token"])
                      .values(ended_at=sa.func.now() - sa.text("interval '30 days'")))
    dbsession.commit()
    wait_until(lambda: client.get(session["links"]["session"]).status_code == 404, what="the session to be purged")
