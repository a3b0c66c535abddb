"""File upload sessions and the http-post-bytes mechanism through the full WSGI app: every
row of the PEP's "File Upload Session States" table that needs no deferred processing,
up-front validation, completion checks, deletion, replacement and extension."""

from __future__ import annotations

import datetime
import hashlib
import io
import os

import pytest
import sqlalchemy as sa
import webtest

from pypi_upload2.models import FileUploadSession, PublishingSession
from tests.conftest import CT, META, RFC3339_Z, assert_problem, build_sdist, build_wheel, count, fetch, stored

WHEEL = "foo-1.0-py3-none-any.whl"





def expiry(value: str) -> datetime.datetime:
    assert RFC3339_Z.fullmatch(value), value
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def declaration(data: bytes, filename=WHEEL, **overrides) -> dict:
    return {"filename": filename, "size": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
            "mechanism": "http-post-bytes", **overrides}


@pytest.fixture
def session(alice):
    return alice.create_session("foo", "1.0").json


@pytest.fixture
def wheel(dist_dir):
    return build_wheel(dist_dir, "foo", "1.0")


# --- creation and status --------------------------------------------------------------------

def test_create_answers_202_with_retry_after_links_and_mechanism(alice, session, wheel):
    response = alice.start_file(session, wheel)
    assert response.status_int == 202
    assert response.content_type == CT
    assert int(response.headers["Retry-After"]) >= 0
    body = response.json
    assert body["meta"] == META
    assert set(body["links"]) == {"file-upload-session", "complete", "extend"}
    assert response.headers["Location"] == body["links"]["file-upload-session"]
    assert body["status"] == "pending"
    assert RFC3339_Z.fullmatch(body["expires-at"])
    assert body["mechanism"]["identifier"] == "http-post-bytes"
    assert body["mechanism"]["file_url"].startswith("http://localhost/")
    # Every URL is under the publishing session's unguessable token.
    for url in [*body["links"].values(), body["mechanism"]["file_url"]]:
        assert session["session-token"] in url
    assert expiry(body["expires-at"]) <= expiry(session["expires-at"])

    files = alice.get(session["links"]["session"]).json["files"]
    assert set(files) == {wheel.name}
    assert files[wheel.name]["status"] == "pending"
    assert files[wheel.name]["link"] == body["links"]["file-upload-session"]


def test_status_get_answers_the_creation_body(alice, session, wheel):
    created = alice.start_file(session, wheel).json
    status = alice.get(created["links"]["file-upload-session"])
    assert status.status_int == 200
    assert status.content_type == CT
    assert "Retry-After" in status.headers
    assert status.json == created


@pytest.mark.parametrize("overrides, status, source", [
    # The filename: its format, its project and version, and what may reach a path.
    ({"filename": "foo-1.0.zip"}, 400, "filename"),
    ({"filename": "foo-1.0.txt"}, 400, "filename"),
    ({"filename": "foo-1.0-py3-none-any"}, 400, "filename"),
    ({"filename": "foo.whl"}, 400, "filename"),
    ({"filename": ""}, 400, "filename"),
    ({"filename": "bar-1.0-py3-none-any.whl"}, 400, "filename"),
    ({"filename": "foo-2.0-py3-none-any.whl"}, 400, "filename"),
    ({"filename": "bar-1.0.tar.gz"}, 400, "filename"),
    ({"filename": "../foo-1.0-py3-none-any.whl"}, 400, "filename"),
    ({"filename": "x/foo-1.0-py3-none-any.whl"}, 400, "filename"),
    ({"filename": "x\\foo-1.0-py3-none-any.whl"}, 400, "filename"),
    ({"filename": "foo-1.0-py3-none-any.whl\n"}, 400, "filename"),
    ({"filename": "foo-1.0\x00-py3-none-any.whl"}, 400, "filename"),
    ({"filename": "foo-1.0+" + "a" * 250 + "-py3-none-any.whl"}, 400, "filename"),
    ({"filename": 42}, 400, "filename"),
    ({"filename": None}, 400, "filename"),
    # The size.
    ({"size": 0}, 400, "size"),
    ({"size": -1}, 400, "size"),
    ({"size": "100"}, 400, "size"),
    ({"size": 1.5}, 400, "size"),
    ({"size": True}, 400, "size"),
    ({"size": None}, 400, "size"),
    # The hashes: at least one secure algorithm, each a hashlib name with a hex digest.
    ({"hashes": {"md5": hashlib.md5(b"x").hexdigest()}}, 400, "hashes"),
    ({"hashes": {"sha1": hashlib.sha1(b"x").hexdigest()}}, 400, "hashes"),
    ({"hashes": {"md5": hashlib.md5(b"x").hexdigest(), "sha1": hashlib.sha1(b"x").hexdigest()}}, 400, "hashes"),
    ({"hashes": {}}, 400, "hashes"),
    ({"hashes": {"sha256": "a" * 64, "sha999": "a" * 64}}, 400, "hashes.sha999"),
    ({"hashes": {"sha256": "z" * 64}}, 400, "hashes.sha256"),
    ({"hashes": {"sha256": "a" * 63}}, 400, "hashes.sha256"),
    ({"hashes": {"sha256": 12}}, 400, "hashes.sha256"),
    ({"hashes": ["sha256"]}, 400, "hashes"),
    ({"hashes": None}, 400, "hashes"),
    # The mechanism.
    ({"mechanism": "vnd-acmecorp-postal"}, 422, "mechanism"),
    ({"mechanism": None}, 400, "mechanism"),
])
def test_an_invalid_declaration_is_refused_and_nothing_is_stored(
        alice, session, wheel, dbsession, storage_dir, overrides, status, source):
    body = declaration(wheel.read_bytes(), **overrides)
    body = {k: v for k, v in body.items() if v is not None}
    refused = alice.post(session["links"]["upload"], body, status=status)
    assert_problem(refused, status, source)
    assert alice.get(session["links"]["session"]).json["files"] == {}
    assert count(dbsession, FileUploadSession) == 0
    assert stored(storage_dir) == []


class TestSizeLimit:
    LIMIT = 4096

    @pytest.fixture
    def settings(self, settings):
        return {**settings, "upload2.max_file_size": str(self.LIMIT)}

    def test_a_file_over_the_limit_is_413_before_any_byte_is_sent(self, alice, dist_dir, dbsession, storage_dir):
        session = alice.create_session("foo", "1.0").json
        big = build_wheel(dist_dir, "foo", "1.0", padding=2 * self.LIMIT)
        refused = alice.start_file(session, big, status=413)
        problem = assert_problem(refused, 413, "size")
        assert str(self.LIMIT) in problem["detail"]
        assert count(dbsession, FileUploadSession) == 0
        assert stored(storage_dir) == []
        # At the limit is fine.
        body = declaration(b"x" * self.LIMIT)
        assert alice.post(session["links"]["upload"], body).status_int == 202


def test_a_published_filename_is_409(alice, session, wheel):
    alice.upload(session, wheel)
    alice.publish(session)
    again = alice.create_session("foo", "1.0").json
    assert_problem(alice.start_file(again, wheel, status=409), 409, "filename")
    assert alice.get(again["links"]["session"]).json["files"] == {}


@pytest.mark.parametrize("state", ["pending", "error"])
def test_the_same_filename_while_its_upload_is_unfinished_is_409(alice, session, wheel, state):
    first = alice.start_file(session, wheel).json
    if state == "error":
        alice.post(first["links"]["complete"], status=400)
    assert_problem(alice.start_file(session, wheel, status=409), 409, "filename")
    files = alice.get(session["links"]["session"]).json["files"]
    assert {name: f["status"] for name, f in files.items()} == {wheel.name: state}


def test_a_second_sdist_in_the_session_is_409(alice, session, dist_dir):
    alice.start_file(session, build_sdist(dist_dir, "foo", "1.0"))
    # Another spelling of the same version names another file, but it is still an sdist.
    other = declaration(b"x" * 10, filename="foo-1.0.0.tar.gz")
    assert_problem(alice.post(session["links"]["upload"], other, status=409), 409, "filename")


def test_a_second_sdist_in_the_release_is_409(alice, session, dist_dir):
    alice.upload(session, build_sdist(dist_dir, "foo", "1.0"))
    alice.publish(session)
    again = alice.create_session("foo", "1.0").json
    other = declaration(b"x" * 10, filename="foo-1.0.0.tar.gz")
    assert_problem(alice.post(again["links"]["upload"], other, status=409), 409, "filename")
    # Wheels for more platforms are still welcome.
    assert alice.start_file(again, build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any")).status_int == 202


# --- delete ---------------------------------------------------------------------------------

@pytest.mark.local_storage
@pytest.mark.parametrize("state", ["pending", "completed", "error"])
def test_delete_answers_204_and_the_file_leaves_the_session(alice, testapp, session, wheel, storage_dir, state):
    file = alice.start_file(session, wheel).json
    alice.send_bytes(file, wheel.read_bytes() if state != "error" else b"not a wheel")
    if state != "pending":
        alice.post(file["links"]["complete"], status=201 if state == "completed" else 400)
    if state != "error":
        assert stored(storage_dir)
    assert alice.get(file["links"]["file-upload-session"]).json["status"] == state

    deleted = alice.delete(file["links"]["file-upload-session"])
    assert deleted.status_int == 204
    assert deleted.body == b""
    status = alice.get(session["links"]["session"]).json
    assert status["files"] == {}
    assert status["status"] == "open"
    assert alice.get(file["links"]["file-upload-session"]).json["status"] == "canceled"
    assert stored(storage_dir) == []
    assert testapp.get(session["links"]["stage"] + "foo/").html.find("a") is None
    # Canceled is terminal: the resource and its mechanism are not reusable.
    assert_problem(alice.delete(file["links"]["file-upload-session"], status=409), 409, "status")
    assert_problem(alice.send_bytes(file, wheel.read_bytes(), status=409), 409, "status")
    assert_problem(alice.post(file["links"]["complete"], status=409), 409, "status")
    # A new upload of the same filename starts over.
    assert alice.upload(session, wheel).json["status"] == "completed"


@pytest.mark.local_storage
def test_delete_while_processing_is_409(alice, session, wheel, dbsession, storage_dir):
    file = alice.start_file(session, wheel).json
    alice.send_bytes(file, wheel.read_bytes())
    dbsession.execute(sa.update(FileUploadSession).values(status="processing"))
    dbsession.commit()
    refused = alice.delete(file["links"]["file-upload-session"], status=409)
    assert "being processed" in assert_problem(refused, 409, "status")["detail"]
    assert alice.get(file["links"]["file-upload-session"]).json["status"] == "processing"
    assert alice.get(session["links"]["session"]).json["files"][wheel.name]["status"] == "processing"
    assert stored(storage_dir)


def test_a_published_file_cannot_be_deleted_through_its_session(alice, testapp, session, wheel):
    file = alice.upload(session, wheel).json
    alice.publish(session)
    assert_problem(alice.delete(file["links"]["file-upload-session"], status=409), 409, "status")
    link = testapp.get("/simple/foo/").html.find("a")["href"].split("#")[0]
    assert testapp.get(link).body == wheel.read_bytes()


# --- complete -------------------------------------------------------------------------------

def test_complete_after_the_bytes_answers_201(alice, testapp, session, wheel):
    file = alice.start_file(session, wheel).json
    alice.send_bytes(file, wheel.read_bytes())
    assert alice.get(file["links"]["file-upload-session"]).json["status"] == "pending"
    completed = alice.post(file["links"]["complete"])
    assert completed.status_int == 201
    assert completed.content_type == CT
    assert completed.headers["Location"] == file["links"]["file-upload-session"]
    assert completed.json["status"] == "completed"
    assert alice.get(session["links"]["session"]).json["files"][wheel.name]["status"] == "completed"
    staged = testapp.get(session["links"]["stage"] + "foo/").html.find("a")
    assert staged.text == wheel.name
    assert testapp.get(staged["href"].split("#")[0]).body == wheel.read_bytes()
    assert_problem(alice.post(file["links"]["complete"], status=409), 409, "status")


def _wrong_hash(alice, session, dist_dir):
    data = build_wheel(dist_dir, "foo", "1.0").read_bytes()
    body = declaration(data, hashes={"sha256": hashlib.sha256(b"other").hexdigest()})
    return alice.post(session["links"]["upload"], body).json, data, "sha256 mismatch"


def _wrong_second_hash(alice, session, dist_dir):
    data = build_wheel(dist_dir, "foo", "1.0").read_bytes()
    body = declaration(data, hashes={"sha256": hashlib.sha256(data).hexdigest(),
                                     "blake2b": hashlib.blake2b(b"other").hexdigest()})
    return alice.post(session["links"]["upload"], body).json, data, "blake2b mismatch"


def _wrong_size(alice, session, dist_dir):
    data = build_wheel(dist_dir, "foo", "1.0").read_bytes()
    body = declaration(data, size=len(data) + 1)
    return alice.post(session["links"]["upload"], body).json, data, "Size mismatch"


def _no_bytes(alice, session, dist_dir):
    data = build_wheel(dist_dir, "foo", "1.0").read_bytes()
    return alice.post(session["links"]["upload"], declaration(data)).json, None, "No bytes"


def _not_a_wheel(alice, session, dist_dir):
    data = os.urandom(2048)
    return alice.post(session["links"]["upload"], declaration(data)).json, data, "not a valid wheel"


def _not_an_sdist(alice, session, dist_dir):
    data = build_wheel(dist_dir, "foo", "1.0").read_bytes()
    body = declaration(data, filename="foo-1.0.tar.gz")
    return alice.post(session["links"]["upload"], body).json, data, "not a valid sdist"


def _metadata_name(alice, session, dist_dir):
    data = build_wheel(dist_dir, "foo", "1.0", metadata_name="bar").read_bytes()
    return alice.post(session["links"]["upload"], declaration(data)).json, data, "METADATA Name 'bar'"


def _pkg_info_version(alice, session, dist_dir):
    data = build_sdist(dist_dir, "foo", "1.0", pkg_info_version="2.0").read_bytes()
    body = declaration(data, filename="foo-1.0.tar.gz")
    return alice.post(session["links"]["upload"], body).json, data, "PKG-INFO Version '2.0'"


@pytest.mark.parametrize("arrange", [_wrong_hash, _wrong_second_hash, _wrong_size, _no_bytes, _not_a_wheel,
                                     _not_an_sdist, _metadata_name, _pkg_info_version],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_failed_completion_moves_the_file_to_error_and_blocks_publish_until_deleted(
        alice, testapp, session, dist_dir, storage_dir, arrange):
    file, data, what = arrange(alice, session, dist_dir)
    filename = list(alice.get(session["links"]["session"]).json["files"])[0]
    if data is not None:
        alice.send_bytes(file, data)

    failed = alice.post(file["links"]["complete"], status=400)
    problem = assert_problem(failed, 400, filename)
    assert what in problem["detail"]
    assert failed.headers["Location"] == file["links"]["file-upload-session"]
    status = alice.get(file["links"]["file-upload-session"]).json
    assert status["status"] == "error"
    assert len(status["notices"]) == 1 and what in status["notices"][0]
    entry = alice.get(session["links"]["session"]).json["files"][filename]
    assert entry["status"] == "error" and entry["notices"] == status["notices"]
    assert stored(storage_dir) == []  # the bad bytes are purged
    assert testapp.get(session["links"]["stage"] + "foo/").html.find("a") is None

    # From error, deletion is the only way forward.
    assert_problem(alice.post(file["links"]["complete"], status=409), 409, "status")
    assert_problem(alice.send_bytes(file, b"again", status=409), 409, "status")
    blocked = alice.publish(session, status=409)
    assert assert_problem(blocked, 409)["errors"] == [{"source": filename, "message": "status is error"}]
    alice.delete(file["links"]["file-upload-session"], status=204)
    wheel = build_wheel(dist_dir, "foo", "1.0")
    alice.upload(session, wheel)
    assert alice.publish(session).json["status"] == "published"
    assert [a.text for a in testapp.get("/simple/foo/").html.find_all("a")] == [wheel.name]


def test_replacing_a_completed_file_publishes_the_new_bytes(alice, testapp, session, tmp_path, storage_dir):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = build_wheel(tmp_path / "old", "foo", "1.0", module_source="VALUE = 1\n")
    new = build_wheel(tmp_path / "new", "foo", "1.0", module_source="VALUE = 2\n")
    assert old.name == new.name and old.read_bytes() != new.read_bytes()
    first = alice.upload(session, old).json

    second = alice.start_file(session, new).json
    assert second["links"]["file-upload-session"] != first["links"]["file-upload-session"]
    assert alice.get(first["links"]["file-upload-session"]).json["status"] == "canceled"
    files = alice.get(session["links"]["session"]).json["files"]
    assert files == {new.name: {"status": "pending", "link": second["links"]["file-upload-session"],
                                "notices": []}}
    assert alice.get(session["links"]["session"]).json["status"] == "open"
    assert stored(storage_dir) == []  # the replaced bytes are purged
    alice.send_bytes(second, new.read_bytes())
    alice.post(second["links"]["complete"], status=201)
    alice.publish(session)
    link = testapp.get("/simple/foo/").html.find("a")["href"].split("#")[0]
    assert testapp.get(link).body == new.read_bytes()


# --- extend ---------------------------------------------------------------------------------

def test_extend_a_file_upload_session_never_beyond_its_publishing_session(alice, session, wheel):
    file = alice.start_file(session, wheel).json
    expires = expiry(file["expires-at"])
    same = alice.post(file["links"]["extend"], {"extend-for": 0})
    assert same.status_int == 200
    assert same.content_type == CT
    assert expiry(same.json["expires-at"]) == expires
    later = alice.post(file["links"]["extend"], {"extend-for": 2 * 24 * 3600}).json
    assert expires < expiry(later["expires-at"]) <= expiry(session["expires-at"])
    for huge in (365 * 24 * 3600, 10**30):
        capped = alice.post(file["links"]["extend"], {"extend-for": huge}).json
        assert capped["expires-at"] == session["expires-at"]
        assert set(capped) == set(file) and capped["links"] == file["links"]
    assert alice.get(file["links"]["file-upload-session"]).json["expires-at"] == session["expires-at"]

    for bad in ({}, {"extend-for": -5}, {"extend-for": "60"}, {"extend-for": 2.5}, {"extend-for": False}):
        assert_problem(alice.post(file["links"]["extend"], bad, status=400), 400, "extend-for")


# --- http-post-bytes ------------------------------------------------------------------------

def test_a_body_larger_than_declared_is_413_and_nothing_is_stored(alice, session, wheel, storage_dir):
    file = alice.start_file(session, wheel).json
    refused = alice.send_bytes(file, wheel.read_bytes() + b"x", status=413)
    assert_problem(refused, 413, "body")
    assert stored(storage_dir) == []
    assert alice.get(file["links"]["file-upload-session"]).json["status"] == "pending"
    # The declared bytes are still welcome afterwards.
    alice.send_bytes(file, wheel.read_bytes())
    assert alice.post(file["links"]["complete"]).json["status"] == "completed"


def test_a_streamed_body_larger_than_declared_is_413_and_nothing_is_stored(
        alice, testapp, session, wheel, storage_dir):
    file = alice.start_file(session, wheel).json
    data = wheel.read_bytes() + os.urandom(3 * 1024 * 1024)  # more than one copy chunk over

    def stream(body: bytes):
        # No Content-Length: a chunked body the server can only measure while reading.
        request = webtest.TestRequest.blank(file["mechanism"]["file_url"], method="POST", headers={
            **alice.headers, "Content-Type": "application/octet-stream"})
        request.environ["wsgi.input"] = io.BytesIO(body)
        request.environ["wsgi.input_terminated"] = True
        request.environ.pop("CONTENT_LENGTH", None)
        return request

    assert stream(data).content_length is None
    refused = testapp.do_request(stream(data), status=413)
    assert_problem(refused, 413, "body")
    assert stored(storage_dir) == []
    assert testapp.do_request(stream(wheel.read_bytes()), status=204)
    assert alice.post(file["links"]["complete"]).json["status"] == "completed"


@pytest.mark.parametrize("content_type", ["application/json", CT, "text/plain", "multipart/form-data"])
def test_a_wrong_content_type_is_415(alice, testapp, session, wheel, storage_dir, content_type):
    file = alice.start_file(session, wheel).json
    refused = testapp.post(file["mechanism"]["file_url"], wheel.read_bytes(), status=415,
                           headers={**alice.headers, "Content-Type": content_type})
    assert_problem(refused, 415, "Content-Type")
    assert stored(storage_dir) == []


def test_a_second_post_while_pending_replaces_the_bytes(alice, testapp, session, wheel):
    file = alice.start_file(session, wheel).json
    alice.send_bytes(file, os.urandom(100))
    # Media types are case-insensitive.
    testapp.post(file["mechanism"]["file_url"], wheel.read_bytes(), status=204,
                 headers={**alice.headers, "Content-Type": "Application/Octet-Stream"})
    assert alice.post(file["links"]["complete"]).status_int == 201
    staged = testapp.get(session["links"]["stage"] + "foo/").html.find("a")["href"].split("#")[0]
    assert testapp.get(staged).body == wheel.read_bytes()


def test_a_post_after_completion_is_409_and_keeps_the_bytes(alice, testapp, session, wheel):
    file = alice.upload(session, wheel).json
    mechanism = alice.get(file["links"]["file-upload-session"]).json
    refused = alice.send_bytes(mechanism, b"x" * 10, status=409)
    assert_problem(refused, 409, "status")
    staged = testapp.get(session["links"]["stage"] + "foo/").html.find("a")["href"].split("#")[0]
    assert testapp.get(staged).body == wheel.read_bytes()


def test_the_files_map_mirrors_each_files_state(alice, session, dist_dir, dbsession):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    sdist = build_sdist(dist_dir, "foo", "1.0")
    other = build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any")
    alice.upload(session, wheel)
    alice.start_file(session, sdist)
    broken = alice.start_file(session, other).json
    alice.post(broken["links"]["complete"], status=400)
    files = alice.get(session["links"]["session"]).json["files"]
    assert {name: f["status"] for name, f in files.items()} == {
        wheel.name: "completed", sdist.name: "pending", other.name: "error"}
    row = fetch(dbsession, PublishingSession, token=session["session-token"])
    assert row.status == "open"
