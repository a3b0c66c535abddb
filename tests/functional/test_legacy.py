"""The legacy (1.0) upload API beside Upload 2.0, through the full WSGI app."""

from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import os
import time
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import webtest
from pyramid.config import Configurator
from pyramid.response import Response

from pypi_upload2 import tasks
from pypi_upload2.db import Base
from pypi_upload2.models import NameReservation, PublishingSession
from pypi_upload2.builtin.models import Filename, Project, Release, ReleaseFile, Role, User
from pypi_upload2.states import PublishingStatus
from tests.conftest import CT, META, Uploader, assert_problem, basic, build_sdist, build_wheel

PROBLEM = "application/problem+json"
BOUNDARY = "legacy-test-boundary-7c1f"


def encode(parts) -> tuple[bytes, str]:
    """A multipart/form-data body with the parts in the order given; a (filename, bytes)
    value is a file part."""
    out = []
    for name, value in parts:
        if isinstance(value, tuple):
            filename, data = value
            head = (f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    "Content-Type: application/octet-stream")
        else:
            data, head = value.encode(), f'Content-Disposition: form-data; name="{name}"'
        out += [f"--{BOUNDARY}\r\n{head}\r\n\r\n".encode(), data, b"\r\n"]
    out.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={BOUNDARY}"


def twine_fields(path, **overrides) -> list[tuple[str, str]]:
    """The fields twine sends for ``path`` (a long description included), ``None`` drops one."""
    data = path.read_bytes()
    name, version = path.name.split("-")[:2]
    wheel = path.name.endswith(".whl")
    fields = {
        "name": name, "version": version.removesuffix(".tar.gz").removesuffix(".zip"),
        "filetype": "bdist_wheel" if wheel else "sdist", "pyversion": "py3" if wheel else "source",
        "metadata_version": "2.1",
        "summary": "A test distribution.", "description": "A long description. " * 2000,
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
        ":action": "file_upload", "protocol_version": "1",
    }
    fields.update(overrides)
    return [(k, v) for k, v in fields.items() if v is not None]


class Legacy:
    """One principal posting legacy forms through WebTest."""

    def __init__(self, app, token, url="/legacy/"):
        self.app, self.headers, self.url = app, basic(token), url

    def upload(self, path, status=200, *, content_first=False, data=None, headers=None, **overrides):
        fields = twine_fields(path, **overrides)
        content = [("content", (path.name, path.read_bytes() if data is None else data))]
        body, content_type = encode(content + fields if content_first else fields + content)
        return self.app.post(self.url, body, status=status,
                             headers={**self.headers, "Content-Type": content_type, **(headers or {})})


def stored(storage_dir) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), storage_dir) for d, _, fs in os.walk(storage_dir) for f in fs}


# The tables an upload writes (the accounts are the tests' own arrangement).
STATE_TABLES = ("upload2_projects", "upload2_roles", "upload2_releases", "upload2_release_files",
                "upload2_filenames", "upload2_publishing_sessions", "upload2_file_upload_sessions",
                "upload2_name_reservations")


def snapshot(dbsession, storage_dir) -> tuple[dict, set[str]]:
    """Every row an upload could add or change, and every stored blob."""
    rows = {t.name: dbsession.execute(sa.select(t).order_by(*t.primary_key.columns)).all()
            for t in Base.metadata.sorted_tables if t.name in STATE_TABLES}
    assert rows.keys() == set(STATE_TABLES)  # a renamed table must not drop out of the comparison
    dbsession.rollback()  # no transaction left open: SQLite writers queue on it
    return rows, stored(storage_dir)


def listed(testapp, name) -> dict[str, dict]:
    page = testapp.get(f"/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    return {f["filename"]: f for f in page.json["files"]}


@pytest.fixture
def legacy_alice(testapp, make_user):
    return Legacy(testapp, make_user("alice"))


@pytest.mark.local_storage
def test_upload_publishes_each_file_at_once(legacy_alice, testapp, dbsession, dist_dir, storage_dir):
    wheel, sdist = build_wheel(dist_dir, "foo", "1.0", requires_python=">=3.9"), build_sdist(dist_dir, "foo", "1.0")
    response = legacy_alice.upload(wheel)
    assert response.status == "200 OK" and response.text == "OK\n"
    files = listed(testapp, "foo")
    assert list(files) == [wheel.name]
    legacy_alice.upload(sdist)

    files = listed(testapp, "foo")
    assert set(files) == {wheel.name, sdist.name}
    for path in (wheel, sdist):
        entry = files[path.name]
        assert entry["hashes"] == {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        assert entry["size"] == path.stat().st_size and entry["upload-time"]
        assert testapp.get(entry["url"]).body == path.read_bytes()
    assert files[wheel.name]["requires-python"] == ">=3.9"
    metadata = testapp.get(files[wheel.name]["url"] + ".metadata").body
    assert hashlib.sha256(metadata).hexdigest() == files[wheel.name]["core-metadata"]["sha256"]
    # The uploader of a new project becomes its Owner; the project is registered (its row
    # exists once its first release is published) and no name reservation is left.
    project = dbsession.scalar(sa.select(Project).where(Project.normalized_name == "foo"))
    assert project is not None
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(NameReservation)) == 0
    role = dbsession.scalar(sa.select(Role).join(User).where(User.username == "alice"))
    assert (role.project_id, role.role_name) == (project.id, "Owner")
    release = dbsession.scalar(sa.select(Release))
    assert release.published_at is not None
    # Each upload went through a publishing session of its own, published at once.
    sessions = dbsession.scalars(sa.select(PublishingSession).order_by(PublishingSession.id)).all()
    assert [(s.status, s.ended_at is not None) for s in sessions] == [(PublishingStatus.PUBLISHED, True)] * 2
    assert [[f.filename for f in s.files] for s in sessions] == [[wheel.name], [sdist.name]]
    assert dbsession.scalars(sa.select(ReleaseFile.publishing_session_id).order_by(ReleaseFile.id)).all() == [
        s.id for s in sessions]
    assert set(dbsession.scalars(sa.select(Filename.filename))) == {wheel.name, sdist.name}
    # Every stored blob belongs to a published file (its bytes and its metadata).
    rows = dbsession.scalars(sa.select(ReleaseFile)).all()
    assert stored(storage_dir) == {k for f in rows for k in (f.blob_key, f.metadata_key)}


@pytest.mark.local_storage
def test_fields_may_follow_the_file(legacy_alice, testapp, dist_dir, storage_dir):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    data = wheel.read_bytes()
    legacy_alice.upload(wheel, content_first=True, md5_digest=hashlib.md5(data).hexdigest())
    assert list(listed(testapp, "foo")) == [wheel.name]

    # A digest declared after the file is checked against the stored bytes all the same.
    other = build_wheel(dist_dir, "foo", "1.0", tag="py2.py3-none-any")
    response = legacy_alice.upload(other, 400, content_first=True, blake2_256_digest="0" * 64)
    assert response.status.startswith("400 The file's blake2b-256 digest")
    assert list(listed(testapp, "foo")) == [wheel.name]
    assert len(stored(storage_dir)) == 2


def test_reupload_of_the_same_bytes_is_a_no_op_other_bytes_are_refused(legacy_alice, testapp, dist_dir,
                                                                        storage_dir):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    legacy_alice.upload(wheel)
    before = stored(storage_dir)
    assert legacy_alice.upload(wheel).text == "OK\n"
    assert stored(storage_dir) == before

    changed = wheel.with_name("changed") / wheel.name
    changed.parent.mkdir()
    build_wheel(changed.parent, "foo", "1.0", module_source="VALUE = 2\n")
    response = legacy_alice.upload(changed, 400)
    # twine's and uv's skip-existing read PyPI's words in the status line and the body.
    assert response.status.startswith("400 File already exists")
    assert response.content_type == PROBLEM and "File already exists" in response.json["detail"]
    assert stored(storage_dir) == before
    assert listed(testapp, "foo")[wheel.name]["hashes"]["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_a_filename_reserved_by_a_publish_in_progress_is_409(legacy_alice, dbsession, dist_dir, storage_dir):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    sdist = build_sdist(dist_dir, "foo", "1.0")
    legacy_alice.upload(sdist)
    # What a deferred publish holds while it runs: the filename, reserved but not published.
    dbsession.add(Filename(filename=wheel.name))
    dbsession.commit()
    before = snapshot(dbsession, storage_dir)
    response = legacy_alice.upload(wheel, 409)
    assert response.json["title"] == "Publish in progress"
    assert "reserved by a publish in progress" in response.json["detail"]
    assert snapshot(dbsession, storage_dir) == before
    assert wheel.name not in listed(legacy_alice.app, "foo")


@pytest.mark.parametrize("status", [PublishingStatus.OPEN, PublishingStatus.PROCESSING, PublishingStatus.ERROR])
def test_a_release_with_a_live_session_takes_no_unstaged_file(alice, legacy_alice, testapp, dbsession, dist_dir,
                                                               storage_dir, status):
    wheel, sdist = build_wheel(dist_dir, "foo", "1.0"), build_sdist(dist_dir, "foo", "1.0")
    session = alice.create_session("foo", "1.0").json
    alice.upload(session, wheel)
    dbsession.execute(sa.update(PublishingSession).values(status=status))  # as a deferred publish leaves it
    dbsession.commit()
    before = snapshot(dbsession, storage_dir)
    url = session["links"]["session"]
    # The staged filename, and one the session does not hold: a release is published whole.
    for path in (wheel, sdist):
        response = legacy_alice.upload(path, 409)
        assert response.status.startswith(f"409 foo 1.0 is being staged in a publishing session that is {status}")
        assert response.json["title"] == "Publishing session exists"
        assert url in response.json["detail"] and response.headers["Location"] == url
        assert snapshot(dbsession, storage_dir) == before
    testapp.get("/simple/foo/", status=404)
    # Another version of the name is not concerned.
    legacy_alice.upload(build_wheel(dist_dir, "foo", "0.9"))


def test_a_published_file_resent_during_a_later_session_is_still_a_no_op(alice, legacy_alice, testapp, dbsession,
                                                                         dist_dir, storage_dir):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    legacy_alice.upload(wheel)
    session = alice.create_session("foo", "1.0").json  # e.g. staging more wheels for 1.0
    before = snapshot(dbsession, storage_dir)
    # A re-run of the first upload publishes nothing new, so the live session does not block it.
    assert legacy_alice.upload(wheel).text == "OK\n"
    changed = dist_dir / "changed"
    changed.mkdir()
    other = build_wheel(changed, "foo", "1.0", module_source="VALUE = 2\n")
    assert legacy_alice.upload(other, 400).status.startswith("400 File already exists")
    assert snapshot(dbsession, storage_dir) == before
    assert alice.get(session["links"]["session"]).json["status"] == "open"


@pytest.mark.parametrize("end", ["publish", "cancel"])
def test_once_the_session_has_ended_legacy_uploads_follow_the_filename_rules(alice, legacy_alice, testapp,
                                                                             dist_dir, end):
    wheel, sdist = build_wheel(dist_dir, "foo", "1.0"), build_sdist(dist_dir, "foo", "1.0")
    session = alice.create_session("foo", "1.0").json
    alice.upload(session, wheel)
    legacy_alice.upload(sdist, 409)
    if end == "publish":
        alice.publish(session)
        assert legacy_alice.upload(wheel).text == "OK\n"  # the published bytes again: a no-op
        changed = dist_dir / "changed"
        changed.mkdir()
        other = build_wheel(changed, "foo", "1.0", module_source="VALUE = 2\n")
        assert legacy_alice.upload(other, 400).status.startswith("400 File already exists")
    else:
        alice.delete(session["links"]["session"])
        legacy_alice.upload(wheel)  # a staged, never published filename is free
    legacy_alice.upload(sdist)
    files = listed(testapp, "foo")
    assert set(files) == {wheel.name, sdist.name}
    assert files[wheel.name]["hashes"]["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_the_session_is_not_disclosed_to_who_may_not_upload(alice, testapp, make_user, dist_dir, storage_dir):
    session = alice.create_session("foo", "1.0").json
    token = session["links"]["session"].rstrip("/").rsplit("/", 1)[1]
    response = Legacy(testapp, make_user("bob")).upload(build_wheel(dist_dir, "foo", "1.0"), 403)
    # The reserved name refuses bob as the 2.0 API's session creation does.
    assert response.status.startswith("403 'foo' is reserved by another uploader's first release")
    assert token not in response.text and token not in str(response.headers)
    assert stored(storage_dir) == set()


def test_a_name_reserved_by_another_users_session_is_403(bob, legacy_alice, testapp, dist_dir, storage_dir):
    bob.create_session("foo", "1.0")
    response = legacy_alice.upload(build_wheel(dist_dir, "foo", "2.0"), 403)
    assert response.status.startswith("403 'foo' is reserved by another uploader's first release")
    assert stored(storage_dir) == set()
    testapp.get("/simple/foo/", status=404)


def test_the_project_is_authorized_before_the_bytes_are_stored(legacy_alice, testapp, make_user, dist_dir,
                                                                storage_dir):
    legacy_alice.upload(build_wheel(dist_dir, "foo", "1.0"))
    before = stored(storage_dir)
    bob = Legacy(testapp, make_user("bob"))
    bob.upload(build_wheel(dist_dir, "foo", "1.1"), 403)
    assert stored(storage_dir) == before


@pytest.mark.parametrize("headers", [{}, basic("pypi-upload2-1-wrong")], ids=["none", "wrong-token"])
def test_authentication_is_required(testapp, dist_dir, storage_dir, headers):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    body, content_type = encode(twine_fields(wheel) + [("content", (wheel.name, wheel.read_bytes()))])
    response = testapp.post("/legacy/", body, status=401, headers={**headers, "Content-Type": content_type})
    assert response.headers["WWW-Authenticate"] == 'Basic realm="pypi-upload2"'
    assert stored(storage_dir) == set()


@pytest.mark.parametrize(("overrides", "reason"), [
    ({":action": "submit"}, "400 ':action' must be 'file_upload'"),
    ({":action": None}, "400 ':action' must be 'file_upload', not None"),
    ({"protocol_version": "2"}, "400 'protocol_version' must be '1'"),
    ({"name": "bar"}, "400 'foo-1.0-py3-none-any.whl' is not a file of bar 1.0"),
    ({"version": "1.1"}, "400 'foo-1.0-py3-none-any.whl' is not a file of foo 1.1"),
    ({"version": "one"}, "400 'one' is not a valid version"),
    ({"name": None}, "400 The form has no 'name' field"),
    ({"filetype": "sdist"}, "400 'foo-1.0-py3-none-any.whl' is a bdist_wheel, not a sdist"),
    ({"sha256_digest": None, "blake2_256_digest": None}, "400 Include at least one message digest"),
    ({"sha256_digest": "0" * 64}, "400 The file's sha256 digest is not sha256_digest"),
    ({"sha256_digest": "\u00e9" * 64}, "400 The file's sha256 digest is not sha256_digest"),
])
def test_the_form_is_checked_against_the_file(legacy_alice, testapp, dist_dir, storage_dir, overrides, reason):
    response = legacy_alice.upload(build_wheel(dist_dir, "foo", "1.0"), 400, **overrides)
    assert response.status.startswith(reason)
    assert response.content_type == PROBLEM
    assert stored(storage_dir) == set()
    testapp.get("/simple/foo/", status=404)


def test_the_file_is_checked_as_a_distribution(legacy_alice, dist_dir, storage_dir):
    bad_metadata = build_wheel(dist_dir, "foo", "1.0", metadata_version="2.0")
    response = legacy_alice.upload(bad_metadata, 400)
    assert response.status.startswith("400 METADATA: METADATA Version '2.0' does not match")
    not_a_zip = dist_dir / "foo-1.1-py3-none-any.whl"
    not_a_zip.write_bytes(b"not a zip archive")
    assert "not a valid wheel" in legacy_alice.upload(not_a_zip, 400).json["detail"]
    zip_sdist = dist_dir / "foo-1.0.zip"
    zip_sdist.write_bytes(b"PK")
    response = legacy_alice.upload(zip_sdist, 400)
    assert "is a .zip sdist" in response.status
    assert stored(storage_dir) == set()


def test_one_sdist_per_release(legacy_alice, dist_dir, storage_dir):
    legacy_alice.upload(build_sdist(dist_dir, "foo", "1.0"))
    before = stored(storage_dir)
    other = dist_dir / "other"
    other.mkdir()
    second = build_sdist(other, "foo", "1.0")
    renamed = second.rename(other / "Foo-1.0.tar.gz")
    response = legacy_alice.upload(renamed, 400, name="Foo")
    assert response.status == "400 Only one sdist may be uploaded per release."
    assert stored(storage_dir) == before


def test_form_limits(make_app, make_user, dist_dir, storage_dir):
    app = make_app(**{"upload2.max_file_size": "1000"})
    legacy = Legacy(app, make_user("alice"))
    big = build_wheel(dist_dir, "foo", "1.0", padding=2000)
    assert legacy.upload(big, 413).status.startswith("413 The file exceeds this index's limit of 1000 bytes")
    small = build_wheel(dist_dir, "foo", "1.1")
    assert legacy.upload(small, 413, name="x" * 5000).status.startswith("413 The 'name' field is longer than")
    assert stored(storage_dir) == set()


def test_the_publish_checks_apply(make_app, make_user, dist_dir, storage_dir):
    legacy = Legacy(make_app(**{"upload2.project_quota": "5000"}), make_user("alice"))
    legacy.upload(build_wheel(dist_dir, "foo", "1.0"))
    before = stored(storage_dir)
    response = legacy.upload(build_wheel(dist_dir, "foo", "1.1", padding=5000), 422)
    assert "over its quota of 5000 bytes" in response.status
    assert response.json["errors"][0]["source"] == "session"
    assert stored(storage_dir) == before


def test_the_body_must_be_a_well_formed_form(legacy_alice, testapp, dist_dir, storage_dir):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    body, content_type = encode(twine_fields(wheel) + [("content", (wheel.name, wheel.read_bytes()))])
    headers = legacy_alice.headers
    truncated = testapp.post("/legacy/", body[:-200], status=400, headers={**headers, "Content-Type": content_type})
    assert truncated.status.startswith("400 The body is not valid multipart/form-data")
    testapp.post("/legacy/", body, status=415, headers={**headers, "Content-Type": "application/octet-stream"})
    no_file, content_type = encode(twine_fields(wheel))
    response = testapp.post("/legacy/", no_file, status=400, headers={**headers, "Content-Type": content_type})
    assert response.status == "400 The form has no 'content' file part."
    two, content_type = encode(twine_fields(wheel) + [("content", (wheel.name, b"x")), ("content", (wheel.name, b"y"))])
    testapp.post("/legacy/", two, status=400, headers={**headers, "Content-Type": content_type})
    assert stored(storage_dir) == set()


@pytest.fixture
def arranged(make_app, make_user, dist_dir):
    """An index with state to keep: foo 1.0 published (a wheel and an sdist), foo 2.0 staged
    in alice's open session, bob a user without a role; ``dir`` is where a case builds its files."""
    app = make_app(**{"upload2.max_file_size": "60000", "upload2.project_quota": "50000"})
    alice, bob = Legacy(app, make_user("alice")), Legacy(app, make_user("bob"))
    alice.upload(build_wheel(dist_dir, "foo", "1.0"))
    alice.upload(build_sdist(dist_dir, "foo", "1.0"))
    alice.upload(build_wheel(dist_dir, "foo", "2.0"), 201, staged="true")
    (dist_dir / "case").mkdir()
    return SimpleNamespace(app=app, alice=alice, bob=bob, dir=dist_dir / "case")


def raw(c, parts, status, content_type=None, headers=None):
    body, form_type = encode(parts)
    return c.app.post("/legacy/", body, status=status,
                      headers={"Content-Type": content_type or form_type, **(headers or {})})


def truncated(c):
    wheel = build_wheel(c.dir, "foo", "1.1")
    body, content_type = encode(twine_fields(wheel) + [("content", (wheel.name, wheel.read_bytes()))])
    return c.app.post("/legacy/", body[:-200], status=400, headers={**c.alice.headers, "Content-Type": content_type})


def not_a_wheel(c):
    path = c.dir / "foo-1.1-py3-none-any.whl"
    path.write_bytes(b"not a zip archive")
    return c.alice.upload(path, 400)


def invalid_filename(c):
    path = c.dir / "foo-1.1.whl"
    path.write_bytes(build_wheel(c.dir, "foo", "1.1").read_bytes())
    return c.alice.upload(path, 400, name="foo", version="1.1")


def other_bytes(c):
    return c.alice.upload(build_wheel(c.dir, "foo", "1.0", module_source="VALUE = 2\n"), 400)


def second_sdist(c):
    renamed = build_sdist(c.dir, "foo", "1.0").rename(c.dir / "Foo-1.0.tar.gz")
    return c.alice.upload(renamed, 400, name="Foo")


def wheel(c, version="1.1", **options):
    return build_wheel(c.dir, "foo", version, **options)


METADATA_NAME = "400 METADATA: METADATA Name 'bar' does not match the filename's project name 'foo'."
ERRORS = [
    # A form that is invalid, or disagrees with its file.
    pytest.param(400, "400 ':action' must be 'file_upload'",
                 lambda c: c.alice.upload(wheel(c), 400, **{":action": "submit"}), id="action"),
    pytest.param(400, "400 The form has no 'version' field", lambda c: c.alice.upload(wheel(c), 400, version=None),
                 id="missing-field"),
    pytest.param(400, "400 'foo-1.1-py3-none-any.whl' is not a file of foo 1.2",
                 lambda c: c.alice.upload(wheel(c), 400, version="1.2"), id="other-version"),
    pytest.param(400, "400 'foo-1.1-py3-none-any.whl' is a bdist_wheel, not a sdist",
                 lambda c: c.alice.upload(wheel(c), 400, filetype="sdist"), id="filetype"),
    pytest.param(400, "400 The body is not valid multipart/form-data", truncated, id="truncated-form"),
    pytest.param(400, "400 The form has no 'content' file part.",
                 lambda c: raw(c, twine_fields(wheel(c)), 400, headers=c.alice.headers), id="no-file"),
    pytest.param(415, "415 Send multipart/form-data, not application/json",
                 lambda c: raw(c, [], 415, "application/json", c.alice.headers), id="not-a-form"),
    pytest.param(400, "400 'foo-1.1.whl' is not a valid distribution filename", invalid_filename,
                 id="invalid-filename"),
    # Digests missing, or not those of the bytes (declared before or after the file).
    pytest.param(400, "400 Include at least one message digest",
                 lambda c: c.alice.upload(wheel(c), 400, sha256_digest=None, blake2_256_digest=None), id="no-digest"),
    pytest.param(400, "400 The file's sha256 digest is not sha256_digest",
                 lambda c: c.alice.upload(wheel(c), 400, sha256_digest="0" * 64), id="sha256-mismatch"),
    pytest.param(400, "400 The file's blake2b-256 digest is not blake2_256_digest",
                 lambda c: c.alice.upload(wheel(c), 400, content_first=True, blake2_256_digest="0" * 64),
                 id="blake2-mismatch-after-the-file"),
    # Metadata that disagrees with the filename, or no distribution at all; staged as well.
    pytest.param(400, METADATA_NAME, lambda c: c.alice.upload(wheel(c, metadata_name="bar"), 400),
                 id="metadata-name"),
    pytest.param(400, "400 METADATA: METADATA Version '2.0' does not match the filename's version '1.1'",
                 lambda c: c.alice.upload(wheel(c, metadata_version="2.0"), 400), id="metadata-version"),
    pytest.param(400, "400 archive: The file is not a valid wheel (zip) archive", not_a_wheel, id="not-a-wheel"),
    pytest.param(400, METADATA_NAME, lambda c: c.alice.upload(wheel(c, "2.0", metadata_name="bar", tag="py2-none-any"),
                                                              400, staged="true"), id="staged-into-the-session"),
    pytest.param(400, METADATA_NAME, lambda c: c.alice.upload(wheel(c, "3.0", metadata_name="bar"), 400, staged="true"),
                 id="staged-into-a-new-session"),
    # The one filename namespace and the release rules.
    pytest.param(400, "400 File already exists: 'foo-1.0-py3-none-any.whl'", other_bytes, id="file-exists"),
    pytest.param(400, "400 Only one sdist may be uploaded per release.", second_sdist, id="second-sdist"),
    # Who may upload.
    pytest.param(401, "401 Send an API token",
                 lambda c: raw(c, twine_fields(w := wheel(c)) + [("content", (w.name, w.read_bytes()))], 401),
                 id="no-token"),
    pytest.param(403, "403 You may not upload to 'foo'.", lambda c: c.bob.upload(wheel(c), 403), id="forbidden"),
    pytest.param(403, "403 You may not upload to 'foo'.",
                 lambda c: c.bob.upload(wheel(c, "2.0", tag="py2-none-any"), 403, staged="true"),
                 id="forbidden-staged"),
    # A release being staged is published whole.
    pytest.param(409, "409 foo 2.0 is being staged in a publishing session that is open",
                 lambda c: c.alice.upload(build_sdist(c.dir, "foo", "2.0"), 409), id="live-session"),
    # Limits and publish checks.
    pytest.param(413, "413 The file exceeds this index's limit of 60000 bytes.",
                 lambda c: c.alice.upload(wheel(c, padding=70_000), 413), id="file-too-large"),
    pytest.param(413, "413 The 'name' field is longer than 4096 bytes.",
                 lambda c: c.alice.upload(wheel(c), 413, name="x" * 5000), id="field-too-large"),
    pytest.param(422, "422 the project would hold", lambda c: c.alice.upload(wheel(c, padding=55_000), 422),
                 id="over-quota"),
]


@pytest.mark.parametrize(("status", "reason", "case"), ERRORS)
def test_every_error_leaves_the_state_unchanged(arranged, dbsession, storage_dir, status, reason, case):
    before = snapshot(dbsession, storage_dir)
    response = case(arranged)
    assert response.status_int == status and response.status.startswith(reason), response.status
    assert response.content_type == PROBLEM
    assert snapshot(dbsession, storage_dir) == before


def test_the_action_may_be_in_the_query_string(legacy_alice, testapp, dist_dir):
    legacy_alice.url = "/legacy/?:action=file_upload&protocol_version=1"
    wheel = build_wheel(dist_dir, "foo", "1.0")
    legacy_alice.upload(wheel, **{":action": None, "protocol_version": None})
    assert list(listed(testapp, "foo")) == [wheel.name]


def test_get_answers_a_page_saying_how_to_use_the_url(testapp, make_app):
    page = testapp.get("/legacy/", status=200)
    assert page.content_type == "text/html" and page.charset == "utf-8"
    text = " ".join(page.html.get_text().split())
    assert "twine upload --repository-url http://localhost/legacy/ -u __token__" in text
    assert "uv publish --publish-url http://localhost/legacy/ --username __token__" in text
    assert "http://localhost/2.0/" in [a["href"] for a in page.html.find_all("a")]
    head = testapp.head("/legacy/", status=200)
    assert head.content_type == "text/html" and not head.body
    moved = make_app(**{"upload2.legacy_path": "/upload/", "upload2.root_path": "/api/v2/"}).get("/upload/")
    assert "--repository-url http://localhost/upload/" in moved.text and 'href="http://localhost/api/v2/"' in moved.text


@pytest.mark.parametrize("method", ["put", "delete", "patch", "options"])
def test_other_methods_are_405(testapp, method):
    response = getattr(testapp, method)("/legacy/", status=405)
    assert response.headers["Allow"] == "GET, HEAD, POST"


def close_the_window(dbsession, version="1.0") -> None:
    """Move the release's first publication back past the default window of 14 days."""
    release = dbsession.scalar(sa.select(Release).where(Release.version == version))
    release.published_at -= datetime.timedelta(days=15)
    dbsession.commit()


def test_new_files_window(make_app, make_user, dbsession, dist_dir, storage_dir):
    app = make_app()
    token = make_user("alice")
    legacy, uploader = Legacy(app, token), Uploader(app, token)
    legacy.upload(build_wheel(dist_dir, "foo", "1.0"))
    legacy.upload(build_sdist(dist_dir, "foo", "1.0"))  # within the window
    close_the_window(dbsession)
    before = snapshot(dbsession, storage_dir)

    late = build_wheel(dist_dir, "foo", "1.0", tag="py2.py3-none-any")
    assert legacy.upload(late, 400).status.startswith("400 Version 1.0 was first published at")
    assert legacy.upload(late, 400, staged="true").json["title"] == "New files window closed"
    assert snapshot(dbsession, storage_dir) == before  # the session the staged upload opened is gone too
    session = uploader.create_session("foo", "1.0").json
    response = uploader.start_file(session, late, status=400)
    assert response.json["title"] == "New files window closed"
    uploader.delete(session["links"]["session"])
    # Other versions are not concerned; 0 disables the rule.
    legacy.upload(build_wheel(dist_dir, "foo", "1.1"))
    unlimited = Legacy(make_app(**{"upload2.new_files_window": "0"}), token)
    unlimited.upload(late)


@pytest.mark.parametrize("mode", ["sync", "deferred"])
@pytest.mark.parametrize("opened_by", ["2.0", "legacy"])
def test_a_session_opened_within_the_window_is_not_published_after_it(make_app, make_user, dbsession, dist_dir,
                                                                      storage_dir, opened_by, mode):
    app = make_app(**{"upload2.publish_mode": mode})
    token = make_user("alice")
    legacy, uploader = Legacy(app, token), Uploader(app, token)
    wheel, late = build_wheel(dist_dir, "foo", "1.0"), build_sdist(dist_dir, "foo", "1.0")
    legacy.upload(wheel)
    if opened_by == "2.0":
        session = uploader.create_session("foo", "1.0").json
        uploader.upload(session, late)
    else:
        session = legacy.upload(late, 201, staged="true").json
    close_the_window(dbsession)
    before = snapshot(dbsession, storage_dir)

    response = uploader.publish(session, status=400)
    assert_problem(response, 400, "session")
    assert response.json["title"] == "New files window closed"
    assert response.json["detail"].startswith("Version 1.0 was first published at")
    assert snapshot(dbsession, storage_dir) == before
    status = uploader.get(session["links"]["session"]).json
    assert (status["status"], status["files"][late.name]["status"]) == ("open", "completed")
    assert list(listed(app, "foo")) == [wheel.name]
    # Still editable: without the late file it publishes, adding nothing.
    uploader.delete(status["files"][late.name]["link"], status=204)
    uploader.publish(session, status=201 if mode == "sync" else 202)
    assert uploader.get(session["links"]["session"]).json["status"] == "published"
    assert list(listed(app, "foo")) == [wheel.name]


def test_a_deferred_publish_the_window_closes_under_ends_in_error(make_app, make_user, dbsession, dist_dir,
                                                                   monkeypatch):
    app = make_app(**{"upload2.publish_mode": "deferred"})
    token = make_user("alice")
    legacy, uploader = Legacy(app, token), Uploader(app, token)
    wheel, late = build_wheel(dist_dir, "foo", "1.0"), build_sdist(dist_dir, "foo", "1.0")
    legacy.upload(wheel)
    session = uploader.create_session("foo", "1.0").json
    uploader.upload(session, late)
    # Accepted within the window, its task not run yet (a worker's backlog); then the window closes.
    with monkeypatch.context() as held_back:
        held_back.setattr(tasks, "_send", lambda committed, task, args: None)
        assert uploader.publish(session, status=202).json["status"] == "processing"
    session_id = dbsession.scalar(sa.select(PublishingSession.id).where(
        PublishingSession.status == PublishingStatus.PROCESSING))
    assert set(dbsession.scalars(sa.select(Filename.filename))) == {wheel.name, late.name}  # reserved
    dbsession.rollback()
    close_the_window(dbsession)

    app.app.registry["upload2.celery"].tasks["pypi_upload2.publish_session"].delay(session_id)
    status = uploader.get(session["links"]["session"]).json
    assert status["status"] == "error"
    [notice] = status["notices"]
    assert notice.startswith("Publish failed: Version 1.0 was first published at")
    assert list(listed(app, "foo")) == [wheel.name]
    assert dbsession.scalars(sa.select(ReleaseFile.filename)).all() == [wheel.name]
    assert dbsession.scalars(sa.select(Filename.filename)).all() == [wheel.name]  # no reservation left
    dbsession.rollback()
    assert uploader.delete(session["links"]["session"]).json["status"] == "canceled"


def test_staged_upload_joins_or_creates_the_publishing_session(alice, legacy_alice, testapp, dist_dir,
                                                               storage_dir):
    wheel, sdist = build_wheel(dist_dir, "foo", "1.0"), build_sdist(dist_dir, "foo", "1.0")
    created = legacy_alice.upload(wheel, 201, headers={"X-Upload-Staged": "true"})
    body = created.json
    assert created.content_type == CT
    assert created.headers["Location"] == body["links"]["session"]
    assert body["status"] == "open"
    assert body["files"][wheel.name]["status"] == "completed"
    file_status = alice.get(body["files"][wheel.name]["link"]).json
    assert file_status["status"] == "completed"
    assert file_status["mechanism"]["identifier"] == "http-post-bytes"
    # The form field does the same; the file joins the same live session.
    joined = legacy_alice.upload(sdist, 200, staged="true").json
    assert joined["links"] == body["links"]
    assert set(joined["files"]) == {wheel.name, sdist.name}

    stage = testapp.get(body["links"]["stage"] + "foo/")
    assert sorted(a.text for a in stage.html.find_all("a")) == sorted([sdist.name, wheel.name])
    testapp.get("/simple/foo/", status=404)
    assert not [k for k in stored(storage_dir) if k.startswith("legacy/")]

    assert alice.publish(body).json["status"] == "published"
    files = listed(testapp, "foo")
    assert set(files) == {wheel.name, sdist.name}
    assert testapp.get(files[wheel.name]["url"]).body == wheel.read_bytes()


def test_staged_upload_into_a_session_opened_through_2_0(alice, bob, legacy_alice, testapp, make_user,
                                                         dist_dir):
    session = alice.create_session("foo", "1.0").json
    wheel = build_wheel(dist_dir, "foo", "1.0")
    response = legacy_alice.upload(wheel, 200, staged="1")
    assert response.headers["Location"] == session["links"]["session"]
    assert alice.get(session["links"]["session"]).json["files"][wheel.name]["status"] == "completed"
    # Another user, without a role on the reserved name, may not add to it.
    Legacy(testapp, make_user("bob")).upload(build_sdist(dist_dir, "foo", "1.0"), 403, staged="true")


def test_a_failed_staged_upload_keeps_nothing(legacy_alice, testapp, dbsession, dist_dir, storage_dir):
    bad = build_wheel(dist_dir, "foo", "1.0", metadata_name="bar")
    response = legacy_alice.upload(bad, 400, staged="true")
    assert "does not match the filename's project name" in response.json["detail"]
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(Project)) == 0
    assert stored(storage_dir) == set()


@pytest.mark.parametrize("url", ["/2.0/", "/legacy/"])
def test_the_2_0_media_type_on_the_legacy_url_creates_a_session(testapp, make_user, url):
    uploader = Uploader(testapp, make_user("alice"), root=url)
    created = uploader.create_session("foo", "1.0")
    assert created.headers["Location"] == created.json["links"]["session"]
    assert created.json["links"]["session"].startswith("http://localhost/2.0/sessions/")
    exists = uploader.create_session("foo", "1.0", status=409)
    assert exists.status == "409 Conflict"  # the 2.0 API's own errors, not the legacy status line
    assert exists.content_type == PROBLEM
    invalid = uploader.post(url, {"name": "foo"}, status=400)
    assert (invalid.status, invalid.json["errors"][0]["source"]) == ("400 Bad Request", "version")


def test_a_custom_legacy_path_and_none(make_app, make_user, dist_dir):
    token = make_user("alice")
    moved = make_app(**{"upload2.legacy_path": "upload/"})
    Legacy(moved, token, url="/upload/").upload(build_wheel(dist_dir, "foo", "1.0"))
    moved.get("/legacy/", status=404)
    disabled = make_app(**{"upload2.legacy_path": ""})
    Legacy(disabled, token).upload(build_wheel(dist_dir, "foo", "1.1"), 404)


def host_legacy(request):
    return Response(f"the host's legacy upload got {request.content_type}", content_type="text/plain")


def test_a_host_keeps_its_legacy_route_and_adds_the_2_0_dispatch(settings, make_user, dist_dir):
    with Configurator(settings={**settings, "upload2.legacy_path": ""}) as config:
        config.add_route("host.legacy", "/legacy/")
        config.add_view(host_legacy, route_name="host.legacy", request_method="POST")
        config.include("pypi_upload2")
        config.add_upload2_dispatch("host.legacy")
    app = config.make_wsgi_app()
    try:
        host = webtest.TestApp(app)
        token = make_user("alice")
        wheel = build_wheel(dist_dir, "foo", "1.0")
        form = Legacy(host, token).upload(wheel)
        assert form.text == "the host's legacy upload got multipart/form-data"
        uploader = Uploader(host, token, root="/legacy/")
        session = uploader.create_session("foo", "1.0").json
        assert uploader.upload(session, wheel).json["status"] == "completed"
        assert uploader.publish(session).json["status"] == "published"
        invalid = host.post("/legacy/", "{}", headers={"Content-Type": CT, **basic(token)}, status=400)
        assert invalid.json["meta"] == META
    finally:
        app.registry["upload2.engine"].dispose()


@pytest.mark.parametrize(("agent", "client"), [("twine/7.0.0 CPython/3.11.7", "twine"),
                                                ('uv/0.13.9 {"installer":{"name":"uv"}}', "uv")])
def test_the_live_session_advice_fits_a_client_that_cannot_stage(alice, legacy_alice, testapp, dbsession,
                                                                 dist_dir, storage_dir, agent, client):
    session = alice.create_session("foo", "1.0").json
    url = session["links"]["session"]
    before = snapshot(dbsession, storage_dir)
    response = legacy_alice.upload(build_wheel(dist_dir, "foo", "1.0"), 409, headers={"User-Agent": agent})
    detail = response.json["detail"]
    assert response.json["title"] == "Publishing session exists" and response.headers["Location"] == url
    assert response.status.startswith(f"409 foo 1.0 is being staged in a publishing session that is open ({url}): "
                                      f"{client} cannot stage files in it")
    assert f"pypi-upload2 session publish {url}" in detail and f"pypi-upload2 session cancel {url}" in detail
    assert f"DELETE {url}" in detail and "links.publish" in detail
    assert "staged=true" not in detail and "X-Upload-Staged" not in detail
    assert snapshot(dbsession, storage_dir) == before


@pytest.mark.parametrize("agent", [None, "curl/8.5.0", "pypi-upload2/0.1.0 httpx/0.28.1"])
def test_the_live_session_advice_for_other_clients_is_to_stage(alice, legacy_alice, dist_dir, agent):
    url = alice.create_session("foo", "1.0").json["links"]["session"]
    headers = {"User-Agent": agent} if agent else {}
    response = legacy_alice.upload(build_wheel(dist_dir, "foo", "1.0"), 409, headers=headers)
    assert response.json["detail"] == (
        f"foo 1.0 is being staged in a publishing session that is open ({url}): publish or cancel it first, or "
        "stage this file in it with the form field staged=true (the header X-Upload-Staged: true).")
    assert response.headers["Location"] == url


def test_an_archive_inflating_past_the_setting_is_refused(make_app, make_user, dist_dir, storage_dir):
    app = make_app(**{"upload2.max_inflated_size": str(1 << 20), "upload2.max_archive_members": "50"})
    legacy = Legacy(app, make_user("alice"))
    bomb = build_sdist(dist_dir, "foo", "1.0", extra_members={"foo-1.0/zeros.bin": bytes(8 << 20)})
    response = legacy.upload(bomb, 400)
    assert "inflates to more than 1048576 bytes" in response.json["detail"]
    many = build_wheel(dist_dir, "foo", "1.0", extra_members={f"foo/m{n}.py": b"" for n in range(60)})
    assert "more than 50 members" in legacy.upload(many, 400).json["detail"]
    assert not stored(storage_dir)


@pytest.mark.local_storage
def test_the_file_is_stored_and_inspected_before_the_first_write(legacy_alice, testapp, dist_dir, storage_dir,
                                                                  is_postgresql):
    """On SQLite a writer holds the database's one write lock to its commit: what the legacy
    form needs no row for (its bytes, their inspection) is done before its first write, while
    another request writes."""
    if is_postgresql:
        pytest.skip("SQLite's one write lock (PostgreSQL locks rows)")
    wheel = build_wheel(dist_dir, "foo", "1.0")
    engine = testapp.app.registry["upload2.engine"]
    with engine.connect() as writer, writer.begin():
        writer.execute(sa.update(PublishingSession).values(notices=[]))  # takes the write lock
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            upload = pool.submit(legacy_alice.upload, wheel)
            deadline = time.monotonic() + 10
            while not list(storage_dir.glob("legacy/*.metadata")) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert list(storage_dir.glob("legacy/*.metadata")), "not inspected while another request writes"
            assert not upload.done()  # its writes wait for the lock
            writer.commit()
            assert upload.result(timeout=30).text == "OK\n"
    assert list(listed(testapp, "foo")) == [wheel.name]
    assert not list(storage_dir.glob("legacy/*"))  # moved to the file's keys
