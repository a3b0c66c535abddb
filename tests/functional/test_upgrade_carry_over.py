"""Upgrading a real database: an old deployment's unprefixed tables (revisions 0001-0003, history
in ``alembic_version``) carried over row by row into the ``upload2_*`` tables by revision 0004;
and a host application's database, whose own ``users``/``projects``/``alembic_version`` the
plugin's core tables must leave alone.

Each test makes its own database (a temp SQLite file, or a PostgreSQL database it creates and
drops), so the shared ``engine`` fixture never sees these schemas."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

import alembic.command
import pytest
import sqlalchemy as sa
import webtest
from alembic.script import ScriptDirectory

import pypi_upload2
from pypi_upload2 import admin, db
from pypi_upload2.builtin.auth import TOKEN_PREFIX, new_token
from pypi_upload2.builtin.models import ApiToken, Filename, Project, Release, ReleaseFile, Role, User
from pypi_upload2.models import FileUploadSession, NameReservation, PublishingSession
from pypi_upload2.services.auth import secret_digest

from tests.conftest import Uploader, basic, build_wheel

SCRIPT = os.path.join(os.path.dirname(sys.executable), "pypi-upload2")

OLD_TABLES = {"users", "api_tokens", "projects", "roles", "releases", "release_files", "publishing_sessions",
              "file_upload_sessions"}
CORE_TABLES = {"upload2_publishing_sessions", "upload2_file_upload_sessions", "upload2_name_reservations",
               "upload2_release_groups", "upload2_attestations"}
INDEX_TABLES = {"upload2_users", "upload2_api_tokens", "upload2_projects", "upload2_roles", "upload2_releases",
                "upload2_release_files", "upload2_filenames", "upload2_trusted_publishers", "upload2_used_oidc_tokens"}


@pytest.fixture
def fresh_engine(fresh_url):
    engine = db.make_engine(fresh_url)
    yield engine
    engine.dispose()


def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(admin.alembic_config(None))


def core_head() -> str:
    return script().get_revision("core@head").revision


def versions(engine, table: str) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(f"SELECT version_num FROM {table}")).scalars())


def tables(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


# -- an old deployment ----------------------------------------------------------------------------

def old_upgrade_to_0003(engine, monkeypatch) -> None:
    """What ``pypi-upload2 db upgrade`` did before revision 0004: the same scripts, with the
    history in alembic's default ``alembic_version`` table (env.py reads the table's name
    from ``db.VERSION_TABLE`` each time it runs)."""
    with monkeypatch.context() as patch:
        patch.setattr(db, "VERSION_TABLE", "alembic_version")
        alembic.command.upgrade(admin.alembic_config(engine), "0003")


T0 = datetime.datetime(2026, 11, 1, 9, 30, tzinfo=datetime.UTC)


def at(minutes: int) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=minutes)


# Live sessions must not have expired by the time the app reads them.
LATER = db.utcnow() + datetime.timedelta(days=3)

ALICE_SECRET = "alice-old-secret-" + "a" * 20
BOB_SECRET = "bob-old-secret-" + "b" * 22
ALICE_TOKEN = f"{TOKEN_PREFIX}4-{ALICE_SECRET}"
BOB_TOKEN = f"{TOKEN_PREFIX}9-{BOB_SECRET}"


def session_token(n: int) -> str:
    return f"old-session-token-{n:02d}-" + "x" * 20


SHA = {name: format(i, "x") * 64 for i, name in enumerate(
    ["wheel", "sdist", "baz", "deferred", "verifying", "partial", "canceled", "meta1", "meta2"], start=1)}

OLD = {
    "users": [
        {"id": 3, "username": "alice", "created": at(0)},
        {"id": 7, "username": "bob", "created": at(1)},
    ],
    "api_tokens": [
        {"id": 4, "user_id": 3, "digest": secret_digest(ALICE_SECRET), "created": at(2)},
        {"id": 9, "user_id": 7, "digest": secret_digest(BOB_SECRET), "created": at(3)},
    ],
    "projects": [
        # Registered: its first release was published.
        {"id": 11, "name": "Foo.Bar", "normalized_name": "foo-bar", "created": at(4), "registered_at": at(20)},
        # Only reserved, by bob's open first-release session.
        {"id": 12, "name": "Baz", "normalized_name": "baz", "created": at(30), "registered_at": None},
    ],
    "roles": [
        {"id": 21, "project_id": 11, "user_id": 3, "role_name": "Owner"},
        {"id": 22, "project_id": 11, "user_id": 7, "role_name": "Maintainer"},
        {"id": 23, "project_id": 12, "user_id": 7, "role_name": "Owner"},
    ],
    "releases": [
        {"id": 31, "project_id": 11, "version": "1.0", "canonical_version": "1", "published": True,
         "published_at": at(20), "created": at(5)},
        # The reserved project's release, staged by the open session.
        {"id": 32, "project_id": 12, "version": "0.1", "canonical_version": "0.1", "published": False,
         "published_at": None, "created": at(30)},
        # The canceled session's release: never published.
        {"id": 33, "project_id": 11, "version": "2.0", "canonical_version": "2", "published": False,
         "published_at": None, "created": at(40)},
        # The deferred publish in progress: not published yet.
        {"id": 34, "project_id": 11, "version": "1.1", "canonical_version": "1.1", "published": False,
         "published_at": None, "created": at(50)},
        # Alice's open session with files still arriving.
        {"id": 35, "project_id": 11, "version": "3.0a1", "canonical_version": "3a1", "published": False,
         "published_at": None, "created": at(65)},
    ],
    "publishing_sessions": [
        {"id": 41, "token": session_token(41), "token_digest": secret_digest(session_token(41)),
         "name": "Foo.Bar", "version": "1.0", "project_id": 11, "release_id": 31, "created_by_id": 3,
         "status": "published", "notices": [], "created": at(5), "expires_at": at(5 + 7 * 24 * 60),
         "ended_at": at(20)},
        {"id": 42, "token": session_token(42), "token_digest": secret_digest(session_token(42)),
         "name": "Baz", "version": "0.1", "project_id": 12, "release_id": 32, "created_by_id": 7,
         "status": "open", "notices": ["Reserved the new name 'Baz'."], "created": at(30), "expires_at": LATER,
         "ended_at": None},
        {"id": 43, "token": session_token(43), "token_digest": secret_digest(session_token(43)),
         "name": "Foo.Bar", "version": "2.0", "project_id": 11, "release_id": 33, "created_by_id": 7,
         "status": "canceled", "notices": ["Canceled by its uploader."], "created": at(40),
         "expires_at": at(40 + 7 * 24 * 60), "ended_at": at(45)},
        {"id": 44, "token": session_token(44), "token_digest": secret_digest(session_token(44)),
         "name": "Foo.Bar", "version": "1.1", "project_id": 11, "release_id": 34, "created_by_id": 3,
         "status": "processing", "notices": [], "created": at(50), "expires_at": LATER,
         "ended_at": at(60)},  # the old schema's "processing since"
        {"id": 45, "token": session_token(45), "token_digest": secret_digest(session_token(45)),
         "name": "Foo.Bar", "version": "3.0a1", "project_id": 11, "release_id": 35, "created_by_id": 3,
         "status": "open", "notices": ["Publish failed: first try", "ünïcödé ✓ notice"], "created": at(65),
         "expires_at": LATER, "ended_at": None},
    ],
    "file_upload_sessions": [
        {"id": 51, "publishing_session_id": 41, "filename": "foo_bar-1.0-py3-none-any.whl", "packagetype": "bdist_wheel",
         "size": 1200, "hashes": {"sha256": SHA["wheel"]}, "mechanism": "http-post-bytes", "status": "completed",
         "notices": [], "created": at(6), "expires_at": at(6 + 24 * 60), "received_size": 1200,
         "received_hashes": {"sha256": SHA["wheel"], "md5": "0" * 32}, "received_at": at(10),
         "digest_state": None, "requires_python": ">=3.9", "metadata_sha256": SHA["meta1"]},
        {"id": 52, "publishing_session_id": 41, "filename": "foo_bar-1.0.tar.gz", "packagetype": "sdist",
         "size": 900, "hashes": {"sha256": SHA["sdist"]}, "mechanism": "http-post-bytes", "status": "completed",
         "notices": [], "created": at(7), "expires_at": at(7 + 24 * 60), "received_size": 900,
         "received_hashes": {"sha256": SHA["sdist"]}, "received_at": at(11), "digest_state": None,
         "requires_python": None, "metadata_sha256": SHA["meta2"]},
        # The reserved project's session: one completed file.
        {"id": 53, "publishing_session_id": 42, "filename": "baz-0.1-py3-none-any.whl", "packagetype": "bdist_wheel",
         "size": 700, "hashes": {"sha256": SHA["baz"]}, "mechanism": "http-post-bytes", "status": "completed",
         "notices": ["Completed."], "created": at(31), "expires_at": LATER, "received_size": 700,
         "received_hashes": {"sha256": SHA["baz"]}, "received_at": at(32), "digest_state": None,
         "requires_python": ">=3.11", "metadata_sha256": None},
        {"id": 54, "publishing_session_id": 43, "filename": "foo_bar-2.0-py3-none-any.whl", "packagetype": "bdist_wheel",
         "size": 500, "hashes": {"sha256": SHA["canceled"]}, "mechanism": "http-post-bytes", "status": "canceled",
         "notices": [], "created": at(41), "expires_at": at(41 + 24 * 60), "received_size": None,
         "received_hashes": None, "received_at": None, "digest_state": None, "requires_python": None,
         "metadata_sha256": None},
        # The deferred publish's file: completed, its filename reserved below.
        {"id": 55, "publishing_session_id": 44, "filename": "foo_bar-1.1-py3-none-any.whl", "packagetype": "bdist_wheel",
         "size": 1300, "hashes": {"sha256": SHA["deferred"]}, "mechanism": "http-post-bytes", "status": "completed",
         "notices": [], "created": at(51), "expires_at": LATER, "received_size": 1300,
         "received_hashes": {"sha256": SHA["deferred"]}, "received_at": at(55), "digest_state": None,
         "requires_python": None, "metadata_sha256": None},
        # Deferred verification running: the old received_at was when it began.
        {"id": 56, "publishing_session_id": 45, "filename": "foo_bar-3.0a1-py3-none-any.whl",
         "packagetype": "bdist_wheel", "size": 4096, "hashes": {"sha256": SHA["verifying"]},
         "mechanism": "http-post-bytes", "status": "processing", "notices": ["Verifying."], "created": at(66),
         "expires_at": LATER, "received_size": 4096, "received_hashes": {"sha256": SHA["verifying"]},
         "received_at": at(70), "digest_state": None, "requires_python": None, "metadata_sha256": None},
        # A resumable upload halfway: its hashing state kept as JSON.
        {"id": 57, "publishing_session_id": 45, "filename": "foo_bar-3.0a1.tar.gz", "packagetype": "sdist",
         "size": 8192, "hashes": {"sha256": SHA["partial"]}, "mechanism": "vnd-upload2-resumable-v1",
         "status": "pending", "notices": ["Resumed at offset 1024.", "Second note."], "created": at(67),
         "expires_at": LATER, "received_size": 1024, "received_hashes": None, "received_at": None,
         "digest_state": {"sha256": "c3RhdGUtb2Ytc2hhMjU2", "md5": "c3RhdGUtb2YtbWQ1"},
         "requires_python": None, "metadata_sha256": None},
    ],
    "release_files": [
        {"id": 61, "release_id": 31, "filename": "foo_bar-1.0-py3-none-any.whl", "packagetype": "bdist_wheel",
         "size": 1200, "sha256": SHA["wheel"], "requires_python": ">=3.9", "blob_key": "sessions/41/51",
         "metadata_sha256": SHA["meta1"], "uploaded_at": at(10), "published_at": at(20), "publishing_session_id": 41},
        {"id": 62, "release_id": 31, "filename": "foo_bar-1.0.tar.gz", "packagetype": "sdist", "size": 900,
         "sha256": SHA["sdist"], "requires_python": None, "blob_key": "sessions/41/52",
         "metadata_sha256": SHA["meta2"], "uploaded_at": at(11), "published_at": at(20), "publishing_session_id": 41},
        # Reserved by the deferred publish in progress: not published.
        {"id": 63, "release_id": 34, "filename": "foo_bar-1.1-py3-none-any.whl", "packagetype": "bdist_wheel",
         "size": 1300, "sha256": SHA["deferred"], "requires_python": None, "blob_key": "sessions/44/55",
         "metadata_sha256": None, "uploaded_at": at(55), "published_at": None, "publishing_session_id": 44},
    ],
}
INSERT_ORDER = ["users", "api_tokens", "projects", "roles", "releases", "publishing_sessions",
                "file_upload_sessions", "release_files"]


def fill_old_tables(engine) -> None:
    """The old rows as the old app stored them (UTCDateTime: naive UTC on SQLite)."""
    sqlite = engine.dialect.name == "sqlite"

    def stored(value):
        if isinstance(value, datetime.datetime) and sqlite:
            return value.astimezone(datetime.UTC).replace(tzinfo=None)
        return value

    metadata = sa.MetaData()
    with engine.begin() as conn:
        metadata.reflect(conn, only=INSERT_ORDER)
        for table in INSERT_ORDER:
            conn.execute(metadata.tables[table].insert(),
                         [{k: stored(v) for k, v in row.items()} for row in OLD[table]])


def columns_of(obj, names) -> dict:
    return {name: getattr(obj, name) for name in names}


def all_rows(session, model):
    return list(session.scalars(sa.select(model).order_by(*model.__table__.primary_key.columns)))


def pick(rows, *names):
    return [{k: row[k] for k in names} for row in rows]


def test_an_old_deployment_carries_every_row_over(fresh_url, fresh_engine, tmp_path, monkeypatch):
    engine = fresh_engine
    old_upgrade_to_0003(engine, monkeypatch)
    assert tables(engine) == OLD_TABLES | {"alembic_version"}
    assert versions(engine, "alembic_version") == {"0003"}
    fill_old_tables(engine)

    admin.upgrade(engine)

    # The old tables and the old history are gone; the plugin's history is at its heads.
    assert tables(engine) == CORE_TABLES | INDEX_TABLES | {db.VERSION_TABLE}
    current = versions(engine, db.VERSION_TABLE)
    assert current == set(script().get_heads())  # each branch at its head
    applied = {r.revision for r in script().iterate_revisions(tuple(current), "base")}
    assert set(script().get_heads()) <= applied
    assert applied == {r.revision for r in script().walk_revisions()}

    dbsession = db.session_factory(engine)()
    try:
        check_carried_rows(dbsession)
    finally:
        dbsession.close()

    # Upgrading again changes nothing.
    admin.upgrade(engine)
    assert versions(engine, db.VERSION_TABLE) == current

    check_the_app_on_carried_data(fresh_url, engine, tmp_path)


def check_carried_rows(s) -> None:
    old = OLD

    assert [columns_of(u, ("id", "username", "created")) for u in all_rows(s, User)] == old["users"]
    assert [columns_of(t, ("id", "user_id", "digest", "created")) for t in all_rows(s, ApiToken)] == old["api_tokens"]

    # Only the registered project is a project; the reserved one is its owner's reservation.
    assert [columns_of(p, ("id", "name", "normalized_name", "created")) for p in all_rows(s, Project)] == \
        pick([p for p in old["projects"] if p["id"] == 11], "id", "name", "normalized_name", "created")
    assert [columns_of(r, ("normalized_name", "principal_key", "created")) for r in all_rows(s, NameReservation)] == \
        [{"normalized_name": "baz", "principal_key": "7", "created": at(30)}]
    assert [columns_of(r, ("id", "project_id", "user_id", "role_name")) for r in all_rows(s, Role)] == \
        [r for r in old["roles"] if r["project_id"] == 11]

    # Only the published release, with its first publication time.
    assert [columns_of(r, ("id", "project_id", "version", "canonical_version", "published_at"))
            for r in all_rows(s, Release)] == \
        pick([r for r in old["releases"] if r["id"] == 31],
             "id", "project_id", "version", "canonical_version", "published_at")

    # Only the published files; every filename, the deferred publish's reservation too.
    file_columns = ("id", "release_id", "filename", "packagetype", "size", "sha256", "requires_python", "blob_key",
                    "metadata_sha256", "uploaded_at", "published_at", "publishing_session_id")
    assert [columns_of(f, file_columns) for f in all_rows(s, ReleaseFile)] == \
        [f for f in old["release_files"] if f["id"] in (61, 62)]
    assert sorted((f.filename, f.created) for f in all_rows(s, Filename)) == \
        sorted((f["filename"], f["uploaded_at"]) for f in old["release_files"])
    assert s.get(ReleaseFile, 63) is None

    # Every publishing session, same id, token and values; the normalized name and canonical
    # version from its project and release, the creator as the host's principal key.
    projects = {p["id"]: p for p in old["projects"]}
    releases = {r["id"]: r for r in old["releases"]}
    expected = []
    for o in old["publishing_sessions"]:
        expected.append({
            "id": o["id"], "token": o["token"], "token_digest": o["token_digest"], "name": o["name"],
            "normalized_name": projects[o["project_id"]]["normalized_name"], "version": o["version"],
            "canonical_version": releases[o["release_id"]]["canonical_version"],
            "created_by": str(o["created_by_id"]), "status": o["status"], "notices": o["notices"],
            "created": o["created"], "expires_at": o["expires_at"],
            "processing_since": o["ended_at"] if o["status"] == "processing" else None,
            "ended_at": None if o["status"] == "processing" else o["ended_at"],
        })
    got = [columns_of(p, expected[0].keys()) for p in all_rows(s, PublishingSession)]
    assert got == expected
    by_id = {p["id"]: p for p in got}
    # Spelled out for the cases that change shape:
    assert by_id[44]["status"] == "processing"
    assert by_id[44]["processing_since"] == at(60) and by_id[44]["ended_at"] is None
    assert by_id[41]["ended_at"] == at(20) and by_id[41]["processing_since"] is None
    assert by_id[43]["ended_at"] == at(45) and by_id[43]["processing_since"] is None
    assert by_id[42]["normalized_name"] == "baz" and by_id[42]["created_by"] == "7"
    assert by_id[45]["canonical_version"] == "3a1"
    assert by_id[45]["notices"] == ["Publish failed: first try", "ünïcödé ✓ notice"]

    # Every file upload session as it was, plus processing_since for deferred verification.
    names = list(old["file_upload_sessions"][0].keys()) + ["processing_since"]
    got_files = [columns_of(f, names) for f in all_rows(s, FileUploadSession)]
    assert got_files == [
        {**o, "processing_since": o["received_at"] if o["status"] == "processing" else None}
        for o in old["file_upload_sessions"]]
    files = {f["id"]: f for f in got_files}
    assert files[56]["processing_since"] == at(70)
    assert files[57]["digest_state"] == {"sha256": "c3RhdGUtb2Ytc2hhMjU2", "md5": "c3RhdGUtb2YtbWQ1"}
    assert files[57]["notices"] == ["Resumed at offset 1024.", "Second note."]
    assert files[51]["received_hashes"] == {"sha256": SHA["wheel"], "md5": "0" * 32}
    s.commit()


def check_the_app_on_carried_data(url, engine, tmp_path) -> None:
    storage = tmp_path / "files"
    storage.mkdir()
    app = pypi_upload2.main({}, **{"sqlalchemy.url": url, "upload2.storage": str(storage)})
    try:
        testapp = webtest.TestApp(app)
        alice, bob = Uploader(testapp, ALICE_TOKEN), Uploader(testapp, BOB_TOKEN)

        # Old tokens still authenticate; the reserved name's session is still its creator's.
        body = bob.get(f"/2.0/sessions/{session_token(42)}/").json
        assert body["status"] == "open"
        assert body["session-token"] == session_token(42)
        assert body["notices"] == ["Reserved the new name 'Baz'."]
        assert {n: f["status"] for n, f in body["files"].items()} == {"baz-0.1-py3-none-any.whl": "completed"}
        alice.get(f"/2.0/sessions/{session_token(42)}/", status=403)
        testapp.get(f"/2.0/sessions/{session_token(42)}/", status=401,
                    headers=basic(f"{TOKEN_PREFIX}9-not-the-secret"))

        # A role carried over still lets its user in (bob is a Maintainer of foo-bar).
        body = bob.get(f"/2.0/sessions/{session_token(45)}/").json
        assert {n: f["status"] for n, f in body["files"].items()} == {
            "foo_bar-3.0a1-py3-none-any.whl": "processing", "foo_bar-3.0a1.tar.gz": "pending"}
        assert body["notices"] == ["Publish failed: first try", "ünïcödé ✓ notice"]
        processing = alice.get(f"/2.0/sessions/{session_token(44)}/")
        assert processing.json["status"] == "processing" and "Retry-After" in processing.headers

        # The carried sessions still hold their releases and names.
        conflict = alice.create_session("foo-bar", "1.1", status=409)
        assert conflict.headers["Location"].endswith(f"/2.0/sessions/{session_token(44)}/")
        alice.create_session("BAZ", "0.2", status=403)
        bob.create_session("baz", "0.2", status=201)

        # The carried deferred publish concludes under the new code: the filename reserved by
        # the old request is the reservation the task publishes (not a conflict with itself).
        metadata = storage / "sessions" / "44" / "55.metadata"
        metadata.parent.mkdir(parents=True)
        metadata.write_bytes(b"Metadata-Version: 2.1\nName: Foo.Bar\nVersion: 1.1\n\n")
        app.registry["upload2.celery"].tasks["pypi_upload2.publish_session"].delay(44)
        concluded = alice.get(f"/2.0/sessions/{session_token(44)}/").json
        assert (concluded["status"], concluded["notices"]) == ("published", [])
        assert "foo_bar-1.1-py3-none-any.whl" in testapp.get("/simple/foo-bar/").text

        # New rows get new ids, past every carried one: a new user and token, a session on the
        # registered project, and a first release published end to end (project, role, release,
        # file, filename).
        s = db.session_factory(engine)()
        try:
            carol = User(username="carol")
            s.add(carol)
            carol_token = new_token(s, carol)
            s.commit()
            assert carol.id > 7
            assert int(carol_token.removeprefix(TOKEN_PREFIX).partition("-")[0]) > 9
        finally:
            s.close()

        created = alice.create_session("Foo.Bar", "4.0").json
        assert created["status"] == "open"
        assert alice.get(created["links"]["session"]).json["session-token"] == created["session-token"]

        carol_app = Uploader(testapp, carol_token)
        dist = tmp_path / "dist"
        dist.mkdir()
        wheel = build_wheel(dist, "fresh-project", "1.0")
        session = carol_app.create_session("fresh-project", "1.0").json
        carol_app.upload(session, wheel)
        assert carol_app.publish(session).json["status"] == "published"
        testapp.get("/simple/fresh-project/", status=200)

        s = db.session_factory(engine)()
        try:
            new_sessions = s.scalars(sa.select(PublishingSession.id).where(PublishingSession.id > 45)).all()
            assert len(new_sessions) == 3  # bob's baz 0.2, alice's 4.0, carol's first release
            assert s.scalar(sa.select(sa.func.min(PublishingSession.id))) == 41
            new_file = s.scalar(sa.select(FileUploadSession).where(FileUploadSession.filename == wheel.name))
            assert new_file.id > 57
            project = s.scalar(sa.select(Project).where(Project.normalized_name == "fresh-project"))
            # Past the carried ids (a reserved project's, an unpublished release's, a reserved
            # file's old ids were not carried: nothing refers to them any more).
            assert project.id > 11
            assert [r.id > 22 for r in project.roles] == [True]
            release = s.scalar(sa.select(Release).where(Release.project_id == project.id))
            assert release.id > 31
            assert [f.id > 62 for f in release.files] == [True]
            deferred = s.scalar(sa.select(ReleaseFile).where(ReleaseFile.filename == "foo_bar-1.1-py3-none-any.whl"))
            assert deferred.id > 62 and deferred.publishing_session_id == 44 and deferred.release.version == "1.1"
            assert deferred.uploaded_at == at(55)
            carried = s.get(PublishingSession, 44)
            assert carried.processing_since is None and carried.ended_at is not None
            assert s.get(Filename, wheel.name) is not None
            # The carried rows are untouched by the new ones.
            assert s.get(Project, 11).name == "Foo.Bar"
            assert s.get(ReleaseFile, 61).filename == "foo_bar-1.0-py3-none-any.whl"
            s.commit()
        finally:
            s.close()
    finally:
        app.registry["upload2.engine"].dispose()


# -- a host application's database ----------------------------------------------------------------

HOST_REVISION = "a3b1c4d5e6f7"
HOST_TABLES = {"users", "projects", "releases", "roles", "release_files", "alembic_version"}


def make_host_database(engine) -> None:
    """Another app's schema and history, with names the old plugin schema also used."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id VARCHAR(36) PRIMARY KEY, email VARCHAR(200) NOT NULL)")
        conn.exec_driver_sql("CREATE TABLE projects (id INTEGER PRIMARY KEY, title TEXT NOT NULL)")
        conn.exec_driver_sql("CREATE TABLE releases (id INTEGER PRIMARY KEY, "
                             "project_id INTEGER NOT NULL REFERENCES projects (id), label TEXT)")
        conn.exec_driver_sql("CREATE TABLE roles (user_id VARCHAR(36) NOT NULL REFERENCES users (id), "
                             "project_id INTEGER NOT NULL REFERENCES projects (id), kind TEXT, "
                             "PRIMARY KEY (user_id, project_id))")
        conn.exec_driver_sql("CREATE TABLE release_files (id INTEGER PRIMARY KEY, "
                             "release_id INTEGER NOT NULL REFERENCES releases (id), path TEXT NOT NULL)")
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                             "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
        conn.exec_driver_sql(f"INSERT INTO alembic_version (version_num) VALUES ('{HOST_REVISION}')")
        conn.exec_driver_sql("INSERT INTO users VALUES ('4f9c8a52-0000-4000-8000-000000000001', 'h@example.org')")
        conn.exec_driver_sql("INSERT INTO projects VALUES (1, 'host project')")
        conn.exec_driver_sql("INSERT INTO releases VALUES (1, 1, 'v1')")
        conn.exec_driver_sql("INSERT INTO roles VALUES ('4f9c8a52-0000-4000-8000-000000000001', 1, 'owner')")
        conn.exec_driver_sql("INSERT INTO release_files VALUES (1, 1, 'host/v1.tar.gz')")


def host_snapshot(engine) -> dict:
    """The host's tables: their columns and every row."""
    snapshot = {}
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table in sorted(HOST_TABLES):
            columns = [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)]
            rows = conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1")).all()
            snapshot[table] = (columns, [tuple(r) for r in rows])
    return snapshot


def check_core_only(engine, before) -> None:
    assert tables(engine) == HOST_TABLES | CORE_TABLES | {db.VERSION_TABLE}
    assert versions(engine, "alembic_version") == {HOST_REVISION}
    assert versions(engine, db.VERSION_TABLE) == {core_head()}
    assert host_snapshot(engine) == before


def test_core_only_leaves_a_host_database_alone(fresh_engine):
    engine = fresh_engine
    make_host_database(engine)
    before = host_snapshot(engine)

    admin.upgrade(engine, core_only=True)
    check_core_only(engine, before)
    # The core tables are the models' own (autogenerate compares only upload2_* tables).
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    core = sa.MetaData()
    for name in CORE_TABLES:
        db.Base.metadata.tables[name].to_metadata(core)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={
            "version_table": db.VERSION_TABLE,
            "include_name": lambda name, type_, parent: type_ != "table" or name in CORE_TABLES}), core)
    assert diff == []

    # A second run is a no-op: no statement but reads.
    writes = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(("SELECT", "PRAGMA", "SHOW", "BEGIN", "WITH")):
            writes.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        admin.upgrade(engine, core_only=True)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert writes == []
    check_core_only(engine, before)


def test_the_cli_upgrades_only_the_core_in_a_host_database(fresh_url, fresh_engine, tmp_path):
    engine = fresh_engine
    make_host_database(engine)
    before = host_snapshot(engine)
    engine.dispose()
    ini = tmp_path / "host.ini"
    ini.write_text(f"[app:main]\nuse = egg:pypi-upload2\nsqlalchemy.url = {fresh_url}\n")

    result = subprocess.run([SCRIPT, "-c", str(ini), "db", "upgrade", "--core"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "database is up to date" in result.stdout
    check_core_only(engine, before)
