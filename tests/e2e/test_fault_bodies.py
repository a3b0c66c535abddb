"""Clients that break off or stall mid-body, against gunicorn: the upload stays pending (its
bytes are sent again) or resumable (from the offset it acknowledged), nothing partial is left
in storage, and other requests are served meanwhile. A stalled body ends at
``upload2.body_timeout`` under threaded workers, and at gunicorn's ``--timeout`` under sync
workers (which kills the worker; docs/deployment.md)."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time

import pytest

from tests.conftest import basic, build_wheel, gunicorn
from tests.e2e.stack import stack_ini
from tests.s3 import STORAGE
from tests.e2e.test_worker import (append, call, client, half_of_second_append, send_rest,  # noqa: F401
                                   start_resumable, token, wait_until)

MiB = 1024 * 1024
TIMEOUT = 2  # upload2.body_timeout, and gunicorn's --timeout for the sync workers


@pytest.fixture(params=["gthread", "sync"])
def worker_class(request):
    return request.param


@pytest.fixture
def base(tmp_path, database_url, storage_dir, dbsession, worker_class):
    # Sync workers: gunicorn's --timeout ends a stalled body first (the read timeout is longer).
    threaded = worker_class == "gthread"
    ini = stack_ini(tmp_path / "stack.ini", database_url, storage_dir, body_timeout=TIMEOUT if threaded else 60)
    options = (["--worker-class", "gthread", "--threads", "4", "--workers", "1"] if threaded
               else ["--workers", "2", "--timeout", str(TIMEOUT)])
    with gunicorn(ini, *options) as url:
        yield url


@pytest.fixture
def wheel(dist_dir):
    return build_wheel(dist_dir, "foo", "1.0", padding=2 * MiB)


def start_bytes(client, base, wheel) -> tuple[dict, dict]:
    data = wheel.read_bytes()
    session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
    upload = call(client, session["links"]["upload"], {"filename": wheel.name, "size": len(data), "hashes": {
        "sha256": hashlib.sha256(data).hexdigest()}, "mechanism": "http-post-bytes"}, 202).json()
    return session, upload


def raw_post_start(base, url, token, data: bytes) -> socket.socket:
    """A POST of the whole file's length that sends only its first half."""
    sock = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    head = [f"POST {url.removeprefix(base)} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(data)}",
            "Content-Type: application/octet-stream", "Connection: close",
            *(f"{k}: {v}" for k, v in basic(token).items())]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data[:len(data) // 2])
    return sock


def stored(storage_dir) -> list:
    return sorted(p.name for p in storage_dir.rglob("*") if p.is_file())


def served_meanwhile(client, session) -> None:
    started = time.monotonic()
    assert client.get(session["links"]["session"]).status_code == 200
    assert time.monotonic() - started < TIMEOUT  # not queued behind the stalled body


def written_meanwhile(client, base) -> None:
    """Nor is a write (another release's session): the file's row is locked once its body has
    arrived, and on SQLite that lock is the database's one write lock."""
    started = time.monotonic()
    call(client, base + "/2.0/", {"name": "bar", "version": "1.0"}, 201)
    assert time.monotonic() - started < TIMEOUT


def answer(sock: socket.socket) -> tuple[int | None, float]:
    """The status the server answers a broken-off body with (None: it closed without one),
    and how long that took."""
    started = time.monotonic()
    sock.settimeout(30)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return (int(data.split(b" ", 2)[1]) if data else None), time.monotonic() - started


@pytest.mark.parametrize("stall", [False, True], ids=["disconnect", "stall"])
def test_http_post_bytes_body_broken_off_leaves_the_file_pending(base, client, token, wheel, storage_dir,
                                                                 worker_class, stall, is_postgresql):
    session, upload = start_bytes(client, base, wheel)
    data = wheel.read_bytes()
    with contextlib.closing(raw_post_start(base, upload["mechanism"]["file_url"], token, data)) as sock:
        if stall:
            served_meanwhile(client, session)
            if is_postgresql or STORAGE == "local":  # SQLite and S3: the body arrives under the lock
                written_meanwhile(client, base)
        else:
            sock.shutdown(socket.SHUT_WR)
        status, waited = answer(sock)
    if stall:
        # Threaded workers give up on the body; gunicorn kills a sync worker (its own 500).
        assert status == (408 if worker_class == "gthread" else 500) and waited < 5 * TIMEOUT
    else:
        assert status == 400
    wait_until(lambda: stored(storage_dir) == [], what="no partial file", timeout=10)
    assert client.get(upload["links"]["file-upload-session"]).json()["status"] == "pending"
    client.post(upload["mechanism"]["file_url"], content=data).raise_for_status()
    call(client, upload["links"]["complete"], expected=201)


def test_a_stalled_append_leaves_the_upload_resumable(base, client, token, wheel, storage_dir, worker_class):
    data = wheel.read_bytes()
    session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
    upload = start_resumable(client, session, wheel)
    assert append(client, upload, data[:MiB], 0, False).status_code == 204
    sock = half_of_second_append(base, token, upload, data)
    with contextlib.closing(sock):
        served_meanwhile(client, session)
        waited = answer(sock)[1]
    assert waited < 5 * TIMEOUT
    offset = int(client.head(upload["mechanism"]["file_url"]).headers["Upload-Offset"])
    # Threaded workers keep what the reads before the timeout returned (the read it interrupts
    # loses its part, up to 1 MiB); a sync worker is killed mid-append, which then never
    # commits: its bytes are cut off. Either way the offset is what storage holds.
    assert MiB <= offset <= MiB + MiB // 2 if worker_class == "gthread" else offset == MiB
    assert [p.stat().st_size for p in storage_dir.rglob("*") if p.is_file()] == [offset]
    send_rest(client, upload, data, MiB)
    call(client, upload["links"]["complete"], expected=202)  # verified in the web process (no broker)
    assert client.get(upload["links"]["file-upload-session"]).json()["status"] == "completed"
