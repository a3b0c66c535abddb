"""The ``vnd-upload2-resumable-v1`` mechanism: each rule of draft-ietf-httpbis-resumable-upload
the server follows has its own test, through the full WSGI app on a real database and real
files (and, for concurrent appends, a real gunicorn process on PostgreSQL)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import time
import tracemalloc

import httpx
import pytest
import sqlalchemy as sa
import webtest

from pypi_upload2.mechanisms.resumable import IDENTIFIER
from pypi_upload2.models import FileUploadSession
from pypi_upload2.builtin.models import Role, User
from pypi_upload2 import main
from tests.conftest import Uploader, assert_problem, basic, build_wheel, free_port
from tests.conftest import gunicorn as serve_gunicorn

PARTIAL = "application/partial-upload"
MISMATCHING_OFFSET = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
INCONSISTENT_LENGTH = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
COMPLETED_UPLOAD = "https://iana.org/assignments/http-problem-types#completed-upload"
MiB = 1024 * 1024


# -- a resumable client over WebTest (imported by the other tests of deferred work) ------------

def start(uploader: Uploader, session: dict, path, **overrides) -> dict:
    """A file upload session using the resumable mechanism; returns its body."""
    return uploader.start_file(session, path, mechanism=IDENTIFIER, **overrides).json


def patch(uploader: Uploader, upload: dict, data: bytes, offset: int, complete: bool, status=204, **headers):
    return uploader.app.patch(upload["mechanism"]["file_url"], data, status=status, content_type=PARTIAL, headers={
        **uploader.headers, "Upload-Offset": str(offset), "Upload-Complete": "?1" if complete else "?0", **headers})


def head(uploader: Uploader, upload: dict, status=204):
    return uploader.app.head(upload["mechanism"]["file_url"], headers=uploader.headers, status=status)


def send_all(uploader: Uploader, upload: dict, data: bytes, chunk: int) -> None:
    """Append ``data`` in chunks of ``chunk`` bytes, the last with Upload-Complete: ?1."""
    for offset in range(0, len(data), chunk):
        part = data[offset:offset + chunk]
        response = patch(uploader, upload, part, offset, offset + len(part) == len(data))
        assert response.headers["Upload-Offset"] == str(offset + len(part))


def upload_resumable(uploader: Uploader, session: dict, path, chunk: int = 4096, **overrides) -> dict:
    """Start, append every chunk, complete (202); returns the file upload session's body."""
    upload = start(uploader, session, path, **overrides)
    send_all(uploader, upload, path.read_bytes(), chunk)
    return uploader.post(upload["links"]["complete"], status=202).json


def stored_bytes(dbsession, storage_dir, upload: dict) -> bytes | None:
    file_id = int(upload["links"]["file-upload-session"].rstrip("/").rsplit("/", 1)[1])
    key = dbsession.get(FileUploadSession, file_id).blob_key
    dbsession.rollback()  # no transaction left open: SQLite writers queue on it
    path = storage_dir / key
    return path.read_bytes() if path.exists() else None


@pytest.fixture
def wheel(dist_dir):
    return build_wheel(dist_dir, "foo", "1.0", padding=20_000)


@pytest.fixture
def session(alice):
    return alice.create_session("foo", "1.0").json


# -- the mechanism and its resource -----------------------------------------------------------

def test_advertised_and_the_upload_resource_exists_with_the_file_upload_session(alice, session, wheel):
    assert IDENTIFIER in session["mechanisms"]
    upload = start(alice, session, wheel)
    assert upload["mechanism"]["identifier"] == IDENTIFIER
    assert upload["mechanism"]["file_url"].startswith("http://localhost/2.0/")
    response = head(alice, upload)
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Complete"] == "?0"
    assert response.headers["Upload-Length"] == str(wheel.stat().st_size)
    assert response.headers["Cache-Control"] == "no-store"
    limits = dict(item.split("=") for item in response.headers["Upload-Limit"].split(", "))
    assert limits["max-size"] == str(wheel.stat().st_size)
    assert int(limits["max-append-size"]) > 0
    assert 0 < int(limits["max-age"]) <= 24 * 3600
    assert response.body == b""


def test_an_upload_url_naming_no_file_is_404(alice, session, wheel):
    files = start(alice, session, wheel)["links"]["file-upload-session"].rstrip("/").rsplit("/", 1)[0]
    # Too long for the id column too: such an id names no file, it does not fail the query.
    for file_id in ("999999", "abc", "-1", "99999999999", "99999999999999999999999999"):
        url = f"{files}/{file_id}/resumable"
        alice.app.request(url, method="HEAD", headers=alice.headers, status=404)
        response = alice.app.patch(url, b"x", headers={**alice.headers, "Upload-Offset": "0", "Upload-Complete": "?0"},
                                   content_type=PARTIAL, status=404)
        assert_problem(response, 404, "url")


def test_each_file_is_uploaded_only_through_its_negotiated_mechanism(alice, session, wheel, dist_dir):
    resumable = start(alice, session, wheel)
    base = resumable["links"]["file-upload-session"]
    assert resumable["mechanism"]["file_url"] == base + "resumable"
    alice.app.post(base + "bytes", wheel.read_bytes(), status=404,
                   headers={**alice.headers, "Content-Type": "application/octet-stream"})
    other = alice.start_file(session, build_wheel(dist_dir, "foo", "1.0", tag="py2.py3-none-any")).json
    assert other["mechanism"]["file_url"] == other["links"]["file-upload-session"] + "bytes"
    alice.app.request(other["links"]["file-upload-session"] + "resumable", method="HEAD", headers=alice.headers,
                      status=404)
    assert head(alice, resumable).headers["Upload-Offset"] == "0"  # nothing arrived through the wrong door


def test_options_advertises_partial_upload_appends(alice, session, wheel):
    upload = start(alice, session, wheel)
    response = alice.app.options(upload["mechanism"]["file_url"], headers=alice.headers, status=204)
    assert PARTIAL in response.headers["Accept-Patch"]
    assert "max-append-size=" in response.headers["Upload-Limit"]
    assert "PATCH" in response.headers["Allow"]
    assert_problem(alice.app.get(upload["mechanism"]["file_url"], headers=alice.headers, status=405), 405)


def test_chunks_append_at_the_offset_and_the_last_completes_the_upload(alice, session, wheel, testapp):
    data = wheel.read_bytes()
    upload = start(alice, session, wheel)
    # The first append may start at 0 and declare the length.
    first = patch(alice, upload, data[:5000], 0, False, **{"Upload-Length": str(len(data))})
    assert (first.headers["Upload-Offset"], first.headers["Upload-Complete"]) == ("5000", "?0")
    middle = patch(alice, upload, data[5000:12000], 5000, False)
    assert middle.headers["Upload-Offset"] == "12000"
    assert head(alice, upload).headers["Upload-Complete"] == "?0"
    last = patch(alice, upload, data[12000:], 12000, True)
    assert (last.headers["Upload-Offset"], last.headers["Upload-Complete"]) == (str(len(data)), "?1")
    state = head(alice, upload)
    assert (state.headers["Upload-Offset"], state.headers["Upload-Complete"]) == (str(len(data)), "?1")

    completed = alice.post(upload["links"]["complete"], status=202)
    assert completed.json["status"] == "processing"
    assert completed.headers["Location"] == upload["links"]["file-upload-session"]
    assert int(completed.headers["Retry-After"]) >= 1
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "completed"
    alice.publish(session)
    page = testapp.get("/simple/foo/")
    link = page.html.find("a", string=wheel.name)["href"]
    assert link.endswith("#sha256=" + hashlib.sha256(data).hexdigest())
    assert testapp.get(link.split("#")[0]).body == data


@pytest.mark.local_storage
def test_an_offset_other_than_the_current_one_is_409_and_writes_nothing(alice, session, wheel, dbsession,
                                                                         storage_dir):
    data = wheel.read_bytes()
    upload = start(alice, session, wheel)
    patch(alice, upload, data[:1000], 0, False)
    for provided in (0, 500, 1001, 5000):
        response = patch(alice, upload, data[provided:provided + 100], provided, False, status=409)
        body = assert_problem(response, 409, "Upload-Offset")
        assert body["type"] == MISMATCHING_OFFSET
        assert (body["expected-offset"], body["provided-offset"]) == (1000, provided)
        assert response.headers["Upload-Offset"] == "1000"
    assert head(alice, upload).headers["Upload-Offset"] == "1000"
    assert stored_bytes(dbsession, storage_dir, upload) == data[:1000]


@pytest.mark.local_storage
def test_appends_never_rewrite_earlier_bytes(alice, session, wheel, dbsession, storage_dir):
    data = wheel.read_bytes()
    upload = start(alice, session, wheel)
    patch(alice, upload, data[:3000], 0, False)
    patch(alice, upload, data[3000:6000], 3000, False)
    patch(alice, upload, b"\0" * 3000, 0, False, status=409)
    patch(alice, upload, b"\0" * 3000, 3000, False, status=409)
    assert stored_bytes(dbsession, storage_dir, upload) == data[:6000]


def interrupted_patch(uploader: Uploader, upload: dict, sent: bytes, announced: int, offset: int):
    """An append whose client went away: Content-Length promises more than the body holds."""
    request = webtest.TestRequest.blank(upload["mechanism"]["file_url"], method="PATCH", headers={
        **uploader.headers, "Content-Type": PARTIAL, "Upload-Offset": str(offset), "Upload-Complete": "?1"})
    request.environ["wsgi.input"] = io.BytesIO(sent)
    request.environ["CONTENT_LENGTH"] = str(announced)
    return uploader.app.do_request(request, status="*", expect_errors=True)


def test_an_interrupted_append_keeps_what_arrived_and_the_client_resumes_from_head(alice, session, wheel):
    data = wheel.read_bytes()
    upload = start(alice, session, wheel)
    patch(alice, upload, data[:4000], 0, False)
    # The last append breaks off after 6000 of its bytes.
    response = interrupted_patch(alice, upload, data[4000:10000], len(data) - 4000, 4000)
    assert response.status_int == 204
    assert response.headers["Upload-Complete"] == "?0"  # an interrupted append never completes
    state = head(alice, upload)
    assert (state.headers["Upload-Offset"], state.headers["Upload-Complete"]) == ("10000", "?0")
    patch(alice, upload, data[10000:], 10000, True)
    alice.post(upload["links"]["complete"], status=202)
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "completed"


@pytest.mark.local_storage
def test_bytes_beyond_the_declared_size_are_refused_with_413_and_not_stored(alice, session, wheel, dbsession,
                                                                            storage_dir):
    data = wheel.read_bytes()
    upload = start(alice, session, wheel)
    patch(alice, upload, data[:1000], 0, False)
    response = patch(alice, upload, data[1000:] + b"extra", 1000, True, status=413)
    assert_problem(response, 413, "Content-Length")
    assert f"max-size={len(data)}" in response.headers["Upload-Limit"]
    assert head(alice, upload).headers["Upload-Offset"] == "1000"
    assert stored_bytes(dbsession, storage_dir, upload) == data[:1000]
    # The upload is intact: the right bytes still complete it.
    patch(alice, upload, data[1000:], 1000, True)


def test_a_chunked_body_beyond_the_declared_size_fails_the_upload(alice, session, wheel, dbsession, storage_dir):
    data = wheel.read_bytes()
    upload = start(alice, session, wheel)
    request = webtest.TestRequest.blank(upload["mechanism"]["file_url"], method="PATCH", headers={
        **alice.headers, "Content-Type": PARTIAL, "Upload-Offset": "0", "Upload-Complete": "?1"})
    request.environ["wsgi.input"] = io.BytesIO(data + b"extra")
    request.environ["wsgi.input_terminated"] = True  # no Content-Length: the body ends where the input ends
    request.environ.pop("CONTENT_LENGTH", None)
    response = alice.app.do_request(request, status=413, expect_errors=True)
    assert_problem(response, 413, "body")
    assert "Upload-Limit" in response.headers
    status = alice.get(upload["links"]["file-upload-session"]).json
    assert status["status"] == "error"
    assert "more were sent" in status["notices"][0]
    assert stored_bytes(dbsession, storage_dir, upload) is None
    head(alice, upload, status=404)


def test_an_append_over_max_append_size_is_413(make_user, settings, dist_dir):
    app = webtest.TestApp(main({}, **settings, **{"upload2.max_append_size": "2048"}))
    alice = Uploader(app, make_user("alice"))
    session = alice.create_session("foo", "1.0").json
    wheel = build_wheel(dist_dir, "foo", "1.0", padding=5000)
    upload = start(alice, session, wheel)
    assert "max-append-size=2048" in head(alice, upload).headers["Upload-Limit"]
    response = patch(alice, upload, wheel.read_bytes()[:4096], 0, False, status=413)
    assert "max-append-size=2048" in response.headers["Upload-Limit"]
    send_all(alice, upload, wheel.read_bytes(), 2048)
    alice.post(upload["links"]["complete"], status=202)
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "completed"
    app.app.registry["upload2.engine"].dispose()


def test_upload_length_must_match_the_declared_size(alice, session, wheel):
    data = wheel.read_bytes()
    upload = start(alice, session, wheel)
    response = patch(alice, upload, data[:100], 0, False, status=400, **{"Upload-Length": str(len(data) + 1)})
    assert assert_problem(response, 400, "Upload-Length")["type"] == INCONSISTENT_LENGTH
    # Upload-Complete: ?1 with Content-Length states the length too.
    response = patch(alice, upload, data[:100], 0, True, status=400)
    assert assert_problem(response, 400, "Content-Length")["type"] == INCONSISTENT_LENGTH
    assert head(alice, upload).headers["Upload-Offset"] == "0"


def test_nothing_can_be_appended_to_a_complete_upload(alice, session, wheel):
    data = wheel.read_bytes()
    upload = start(alice, session, wheel)
    patch(alice, upload, data, 0, True)
    response = patch(alice, upload, b"more", len(data), True, status=400)
    assert assert_problem(response, 400, "Upload-Complete")["type"] == INCONSISTENT_LENGTH
    response = patch(alice, upload, b"", len(data), True, status=400)
    assert assert_problem(response, 400, "Upload-Complete")["type"] == COMPLETED_UPLOAD


def test_appends_need_partial_upload_and_the_draft_headers(alice, session, wheel):
    upload = start(alice, session, wheel)
    url = upload["mechanism"]["file_url"]
    headers = {**alice.headers, "Upload-Offset": "0", "Upload-Complete": "?0"}
    assert_problem(alice.app.patch(url, b"abc", headers=headers, content_type="application/octet-stream",
                                   status=415), 415, "Content-Type")
    for name, value in (("Upload-Offset", "-1"), ("Upload-Offset", "1.5"), ("Upload-Complete", "true")):
        response = alice.app.patch(url, b"abc", headers={**headers, name: value}, content_type=PARTIAL, status=400)
        assert_problem(response, 400, name)
    assert head(alice, upload).headers["Upload-Offset"] == "0"


def test_every_append_is_authorized(alice, bob, wheel, dist_dir, dbsession, testapp):
    # A registered project (its first release is published), so that its roles decide.
    first = alice.create_session("foo", "0.9").json
    alice.upload(first, build_wheel(dist_dir, "foo", "0.9"))
    alice.publish(first)
    session = alice.create_session("foo", "1.0").json
    data = wheel.read_bytes()
    upload = start(alice, session, wheel)
    patch(alice, upload, data[:1000], 0, False)
    patch(bob, upload, data[1000:2000], 1000, False, status=403)
    head(bob, upload, status=403)
    testapp.head(upload["mechanism"]["file_url"], status=401)
    # Granted while the upload is under way, bob may append; revoked, alice may not.
    bob_id = dbsession.scalar(sa.select(User.id).where(User.username == "bob"))
    role = dbsession.scalar(sa.select(Role).join(User).where(User.username == "alice"))
    project_id = role.project_id
    dbsession.add(Role(project_id=project_id, user_id=bob_id))
    dbsession.delete(role)
    dbsession.commit()
    patch(bob, upload, data[1000:2000], 1000, False)
    patch(alice, upload, data[2000:], 2000, True, status=403)
    assert head(bob, upload).headers["Upload-Offset"] == "2000"


def test_an_append_loads_the_publishing_session_once(alice, session, wheel, wsgi_app):
    # Appends are the mechanism's hot path: authorizing one must not load the session twice.
    statements = []
    engine = wsgi_app.registry["upload2.engine"]

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    upload = start(alice, session, wheel)
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        patch(alice, upload, wheel.read_bytes()[:1000], 0, False)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len([s for s in selects if "FROM upload2_publishing_sessions" in s]) == 1
    assert any("FROM upload2_file_upload_sessions" in s for s in selects)


def test_delete_on_the_upload_resource_cancels_the_file(alice, session, wheel, dbsession, storage_dir):
    upload = start(alice, session, wheel)
    patch(alice, upload, wheel.read_bytes()[:1000], 0, False)
    alice.app.delete(upload["mechanism"]["file_url"], headers=alice.headers, status=204)
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "canceled"
    head(alice, upload, status=404)
    patch(alice, upload, b"x", 1000, False, status=404)
    assert stored_bytes(dbsession, storage_dir, upload) is None


def test_the_upload_resource_of_a_canceled_or_failed_file_is_gone_for_delete_too(alice, session, wheel):
    canceled, failed = start(alice, session, wheel), start(alice, session, wheel, filename="foo-1.0-py2.py3-none-any.whl")
    alice.delete(canceled["links"]["file-upload-session"], status=204)
    patch(alice, failed, wheel.read_bytes(), 0, False)
    alice.post(failed["links"]["complete"], status=400)  # before Upload-Complete: the file fails
    for upload in (canceled, failed):
        response = alice.app.delete(upload["mechanism"]["file_url"], headers=alice.headers, status=404)
        assert_problem(response, 404, "url")


@pytest.mark.local_storage
def test_completing_before_the_last_append_fails_the_file(alice, session, wheel):
    upload = start(alice, session, wheel)
    patch(alice, upload, wheel.read_bytes(), 0, False)  # every byte, but never Upload-Complete: ?1
    response = alice.post(upload["links"]["complete"], status=400)
    assert "not complete" in assert_problem(response, 400)["detail"]
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "error"


def peak_allocated(wsgi_app, request, path) -> tuple:
    """The response to ``request`` with the file at ``path`` as its body, streamed, and the
    peak of the app's own allocations meanwhile."""
    request.environ["CONTENT_LENGTH"] = str(path.stat().st_size)
    with open(path, "rb") as body:
        request.environ["wsgi.input"] = body
        tracemalloc.start()
        try:
            return request.get_response(wsgi_app), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


@pytest.mark.local_storage
def test_an_append_holds_one_chunk_in_memory_not_the_file(alice, session, dist_dir, wsgi_app):
    """The app's own allocations while it appends 48 MiB stay far below the append's size."""
    wheel = build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any", padding=48 * MiB)
    upload = start(alice, session, wheel)
    size = wheel.stat().st_size
    request = webtest.TestRequest.blank(upload["mechanism"]["file_url"], method="PATCH", headers={
        **alice.headers, "Content-Type": PARTIAL, "Upload-Offset": "0", "Upload-Complete": "?1"})
    response, peak = peak_allocated(wsgi_app, request, wheel)
    assert response.status_int == 204, response.body
    assert response.headers["Upload-Offset"] == str(size)
    assert peak < 8 * MiB, f"{peak / MiB:.1f} MiB allocated for a {size / MiB:.0f} MiB append"


# -- two appends at once, through a real server that streams request bodies (gunicorn) --------

def gunicorn(ini, port: int, workers: int = 2):
    """gunicorn serving ``ini`` on ``port``: an append is in progress while its bytes arrive."""
    return serve_gunicorn(ini, "--workers", str(workers), "--timeout", "120", port=port)


def raw_patch_start(base: str, path: str, headers: dict, body: bytes, announced: int) -> socket.socket:
    """Send an append's headers and the first part of its body, and leave it open."""
    sock = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    head_lines = [f"PATCH {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {announced}",
                  "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(head_lines) + "\r\n\r\n").encode() + body)
    return sock


def read_response(sock: socket.socket) -> tuple[int, str]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return int(data.split(b" ", 2)[1]), data.decode(errors="replace")


def test_two_concurrent_appends_never_interleave(is_postgresql, tmp_path, database_url, storage_dir, dbsession,
                                                 make_user, dist_dir):
    if not is_postgresql:
        pytest.skip("needs PostgreSQL (UPLOAD2_TEST_DATABASE_URL)")
    ini = tmp_path / "gunicorn.ini"
    ini.write_text(f"[app:main]\nuse = egg:pypi-upload2\nsqlalchemy.url = {database_url}\n"
                   f"upload2.storage = {storage_dir}\n")
    token = make_user("alice")
    wheel = build_wheel(dist_dir, "foo", "1.0", padding=200_000)
    data = wheel.read_bytes()
    with gunicorn(ini, free_port()) as base, httpx.Client(auth=("__token__", token)) as client:
        ct = {"Content-Type": "application/vnd.pypi.upload.v2+json"}
        session = client.post(base + "/2.0/", json={"meta": {"api-version": "2.0"}, "name": "foo", "version": "1.0"},
                              headers=ct).json()
        upload = client.post(session["links"]["upload"], headers=ct, json={
            "meta": {"api-version": "2.0"}, "filename": wheel.name, "size": len(data),
            "hashes": {"sha256": hashlib.sha256(data).hexdigest()}, "mechanism": IDENTIFIER}).json()
        url = upload["mechanism"]["file_url"]
        append = {"Content-Type": PARTIAL, "Upload-Offset": "0", "Upload-Complete": "?0"}
        first = raw_patch_start(base, url.removeprefix(base), {**basic(token), **append}, data[:50_000], 100_000)
        with contextlib.closing(first):
            # The first append holds the upload (its row lock) while its body is still arriving.
            wait_until(lambda: holds_append_lock(dbsession))
            second = client.patch(url, content=data[:100_000], headers=append)
            assert second.status_code == 409, second.text
            assert second.headers["Content-Type"] == "application/problem+json"
            first.sendall(data[50_000:100_000])
            status, _ = read_response(first)
        assert status == 204
        state = client.head(url)
        assert state.headers["Upload-Offset"] == "100000"
        third = client.patch(url, content=data[100_000:], headers={
            "Content-Type": PARTIAL, "Upload-Offset": "100000", "Upload-Complete": "?1"})
        assert third.status_code == 204, third.text
        client.post(upload["links"]["complete"], json={"meta": {"api-version": "2.0"}}, headers=ct)
        assert client.get(upload["links"]["file-upload-session"]).json()["status"] == "completed"


def holds_append_lock(dbsession) -> bool:
    """Another backend holds a row lock on a file upload session: SELECT ... FOR UPDATE takes
    a RowShareLock on the table (row locks themselves are not listed)."""
    found = dbsession.scalar(sa.text(
        "SELECT count(*) FROM pg_locks JOIN pg_class ON pg_class.oid = pg_locks.relation "
        "WHERE pg_class.relname = 'upload2_file_upload_sessions' AND pg_locks.mode = 'RowShareLock' "
        "AND pg_locks.granted AND pg_locks.pid != pg_backend_pid()"))
    dbsession.rollback()
    return found > 0


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)

