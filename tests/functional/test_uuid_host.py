"""The plugin in another index's house (tests/hostapp): UUID-keyed models of the host's own,
its Bearer security policy, its request.db, pages and services, and its adapters."""

from __future__ import annotations

import hashlib
import uuid

import pyramid.scripting
import pytest
import sqlalchemy as sa
import webtest
from sqlalchemy.orm import Session

from pypi_upload2.interfaces import IFilenames, IProjects
from pypi_upload2.models import NameReservation, PublishingSession
from pypi_upload2.problems import FilenameConflict
from tests.conftest import assert_problem, basic, build_sdist, build_wheel, fetch
from tests.hostapp import HostSession, make_app
from tests.hostapp.adapters import HostIndex
from tests.hostapp.models import Artifact, DeletedFilename, FilenameHold, Maintainer, Package, PackageVersion
from tests.hostapp.testing import BearerUploader, host_files, host_settings, host_tables, make_account  # noqa: F401
from tests.hostapp.views import IGreeting


@pytest.fixture
def flushed_tables():
    """The tables each HostSession flush or statement wrote to: the plugin's rows must go
    through it (db.insert's rows are statements, not flushes)."""
    tables = set()

    def record(session, context, instances):
        tables.update(obj.__table__.name for obj in [*session.new, *session.dirty])

    def record_statement(state):
        if state.is_insert or state.is_update or state.is_delete:
            tables.add(state.statement.table.name)

    sa.event.listen(HostSession, "before_flush", record)
    sa.event.listen(HostSession, "do_orm_execute", record_statement)
    yield tables
    sa.event.remove(HostSession, "before_flush", record)
    sa.event.remove(HostSession, "do_orm_execute", record_statement)


@pytest.fixture
def host_app(host_settings):
    app = make_app(host_settings)
    yield app
    app.registry["host.engine"].dispose()


@pytest.fixture
def host(host_app):
    return webtest.TestApp(host_app)


@pytest.fixture
def alice(host, make_account):
    account_id, key = make_account("alice")
    uploader = BearerUploader(host, key)
    uploader.account_id = account_id
    return uploader


@pytest.fixture
def bob(host, make_account):
    return BearerUploader(host, make_account("bob")[1])


def links(page) -> dict:
    return {a.text: a["href"] for a in page.html.find_all("a")}


def publish_foo(alice, dist_dir, version="1.0"):
    session = alice.create_session("Foo.Bar", version).json
    wheel = build_wheel(dist_dir, "Foo.Bar", version)
    alice.upload(session, wheel)
    alice.publish(session)
    return wheel


def test_the_whole_flow_lands_in_the_hosts_rows_and_pages(host, alice, dist_dir, dbsession, engine,
                                                          host_files, flushed_tables):
    session = alice.create_session("Foo.Bar", "1.0").json
    principal = str(alice.account_id)
    assert fetch(dbsession, NameReservation, normalized_name="foo-bar").principal_key == principal
    assert fetch(dbsession, PublishingSession, normalized_name="foo-bar").created_by == principal
    assert uuid.UUID(principal) == alice.account_id
    paths = [build_wheel(dist_dir, "Foo.Bar", "1.0"), build_sdist(dist_dir, "Foo.Bar", "1.0")]
    for path in paths:
        assert alice.upload(session, path).json["status"] == "completed"
    stage = host.get(session["links"]["stage"] + "foo-bar/")
    assert sorted(links(stage)) == sorted(p.name for p in paths)
    # Nothing staged is the host's yet.
    assert links(host.get("/simple/")) == {}
    host.get("/simple/foo-bar/", status=404)

    assert alice.publish(session).json["status"] == "published"
    assert links(host.get("/simple/")) == {"Foo.Bar": "http://localhost/simple/foo-bar/"}
    published = links(host.get("/simple/Foo.Bar/").follow())
    assert sorted(published) == sorted(p.name for p in paths)
    for path in paths:
        url, _, fragment = published[path.name].partition("#")
        assert url.startswith("http://localhost/packages/")
        assert fragment == "sha256=" + hashlib.sha256(path.read_bytes()).hexdigest()
        assert host.get(url).body == path.read_bytes()
        # The host serves its own copy; the plugin's staged bytes are not what it reads.
        assert (host_files / "foo-bar" / path.name).read_bytes() == path.read_bytes()

    with Session(engine) as db:
        package = db.scalar(sa.select(Package))
        assert isinstance(package.id, uuid.UUID) and (package.display, package.canonical) == ("Foo.Bar", "foo-bar")
        assert [m.account_id for m in db.scalars(sa.select(Maintainer))] == [alice.account_id]
        assert [v.version for v in db.scalars(sa.select(PackageVersion))] == ["1.0"]
        artifacts = db.scalars(sa.select(Artifact).order_by(Artifact.filename)).all()
        assert [(a.filename, a.size) for a in artifacts] == sorted((p.name, p.stat().st_size) for p in paths)
        assert all(isinstance(a.id, uuid.UUID) for a in artifacts)
        assert db.scalar(sa.select(sa.func.count()).select_from(FilenameHold)) == 0
    assert fetch(dbsession, NameReservation, normalized_name="foo-bar") is None
    # Every plugin row went through the host's session; the plugin made no engine of its own.
    plugin_tables = {"upload2_publishing_sessions", "upload2_file_upload_sessions", "upload2_name_reservations"}
    assert plugin_tables <= flushed_tables
    assert "upload2.engine" not in host.app.registry and "upload2.dbsession_factory" not in host.app.registry

    # The next release's stage lists the published files at the host's own URLs.
    later = alice.create_session("foo-bar", "1.1").json
    staged = links(host.get(later["links"]["stage"] + "foo-bar/"))
    assert {name: href.partition("#")[0] for name, href in staged.items()} == {
        name: href.partition("#")[0] for name, href in published.items()}


def test_deferred_publish_runs_in_the_hosts_session_too(host_settings, make_account, dist_dir, flushed_tables):
    app = make_app({**host_settings, "upload2.publish_mode": "deferred"})
    try:
        host = webtest.TestApp(app)
        alice = BearerUploader(host, make_account("alice")[1])
        session = alice.create_session("foo", "1.0").json
        wheel = build_wheel(dist_dir, "foo", "1.0")
        alice.upload(session, wheel)
        assert alice.publish(session, status=202).json["status"] == "processing"
        # Eager mode: the task ran after the request committed, with the host's request.db.
        assert alice.get(session["links"]["session"]).json["status"] == "published"
        assert list(links(host.get("/simple/foo/"))) == [wheel.name]
    finally:
        app.registry["host.engine"].dispose()


def test_a_non_maintainer_is_refused_on_every_session_url(host, alice, bob, dist_dir):
    def refused(session, version):
        wheel, sdist = build_wheel(dist_dir, "Foo.Bar", version), build_sdist(dist_dir, "Foo.Bar", version)
        file = alice.start_file(session, sdist).json
        requests = [
            lambda: bob.get(session["links"]["session"], status=403),
            lambda: bob.start_file(session, wheel, status=403),
            lambda: bob.get(file["links"]["file-upload-session"], status=403),
            lambda: bob.send_bytes(file, sdist.read_bytes(), status=403),
            lambda: bob.post(file["links"]["complete"], status=403),
            lambda: bob.post(session["links"]["extend"], {"extend-for": 60}, status=403),
            lambda: bob.delete(file["links"]["file-upload-session"], status=403),
            lambda: bob.publish(session, status=403),
            lambda: bob.delete(session["links"]["session"], status=403),
        ]
        for request in requests:
            assert_problem(request(), 403)
        assert alice.get(session["links"]["session"]).json["files"][sdist.name]["status"] == "pending"

    # A reserved new name: only its creator's.
    reserved = alice.create_session("Foo.Bar", "1.0").json
    refused(reserved, "1.0")
    assert_problem(bob.create_session("foo-bar", "2.0", status=403), 403, "name")
    alice.delete(reserved["links"]["session"])

    # An existing package: only its maintainers (the host's ACL over host_maintainers).
    publish_foo(alice, dist_dir, "1.0")
    existing = alice.create_session("foo-bar", "2.0").json
    refused(existing, "2.0")
    assert_problem(bob.create_session("foo-bar", "3.0", status=403), 403)
    # Without the host's credentials: 401, whatever else is sent.
    for headers in ({}, basic("pypi-upload2-1-secret"), {"Authorization": "Bearer wrong"}):
        response = host.get(existing["links"]["session"], headers=headers, status=401)
        assert_problem(response, 401)
        # The host's own challenge: it says how this host authenticates.
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="host"'


def test_a_deleted_filename_is_refused(host, alice, dist_dir, engine):
    wheel, sdist = build_wheel(dist_dir, "foo", "1.0"), build_sdist(dist_dir, "foo", "1.0")
    with Session(engine) as db, db.begin():
        db.add(DeletedFilename(filename=wheel.name))
    session = alice.create_session("foo", "1.0").json
    assert_problem(alice.start_file(session, wheel, status=409), 409, "filename")

    # Deleted while staged: the publish's reservation refuses it, and nothing is published.
    alice.upload(session, sdist)
    with Session(engine) as db, db.begin():
        db.add(DeletedFilename(filename=sdist.name))
    assert_problem(alice.publish(session, status=409), 409, sdist.name)
    assert alice.get(session["links"]["session"]).json["status"] == "open"
    host.get("/simple/foo/", status=404)
    with Session(engine) as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(FilenameHold)) == 0


def test_reservations_conflict_and_reserve_nothing(host_app):
    def attempt(filenames):
        env = pyramid.scripting.prepare(registry=host_app.registry)
        request = env["request"]
        try:
            with request.tm:
                request.find_service(IFilenames).reserve(request, filenames)
        finally:
            env["closer"]()

    attempt(["a.whl", "b.whl"])
    with pytest.raises(FilenameConflict) as conflict:
        attempt(["b.whl", "c.whl"])
    assert [e["source"] for e in conflict.value.errors] == ["b.whl"]
    attempt(["c.whl"])  # the refused attempt held nothing


def test_the_hosts_own_pages_services_and_session_survive_the_include(host, host_app):
    assert host.get("/").text == "hello from the host (db session: HostSession)"
    assert host.get("/simple/").status_int == 200
    host.get("/packages/not-a-uuid/x.whl", status=404)
    env = pyramid.scripting.prepare(registry=host_app.registry)
    try:
        request = env["request"]
        assert isinstance(request.find_service(IProjects), HostIndex)
        assert request.find_service(IGreeting).greet(request).startswith("hello from the host")
        assert isinstance(request.db, HostSession)
    finally:
        env["closer"]()
    # The plugin's API is there, under its own root, answering the host's credentials only.
    assert_problem(host.post("/2.0/", status=401), 401)


def test_the_stage_diff_without_the_hosts_archives_compares_files_only(host, alice, dist_dir, tmp_path):
    publish_foo(alice, dist_dir)
    later = alice.create_session("foo-bar", "1.1").json
    alice.upload(later, build_sdist(dist_dir, "Foo.Bar", "1.1"))
    body = alice.get(later["links"]["vnd-upload2-diff"]).json
    assert body["base-version"] == "1.0"
    assert body["files"] == {"added": ["foo_bar-1.1.tar.gz"], "removed": ["foo_bar-1.0-py3-none-any.whl"]}
    assert body["notices"] == ["The published release's core metadata is not available to compare.",
                               "The published wheels cannot be read: modules and entry points are not compared."]
    assert alice.get(later["links"]["vnd-upload2-preflight"]).json["errors"] == []


def test_a_release_group_publishes_into_the_hosts_rows_all_or_none(host, alice, dist_dir, dbsession):
    """Release groups go through the host's adapters: its authorization, filename holds and publisher."""
    sessions = []
    for name in ("core", "core-cli"):
        session = alice.create_session(name, "1.0").json
        alice.upload(session, build_wheel(dist_dir, name, "1.0"))
        sessions.append(session)
    groups = host.get("/2.0/").json["links"]["vnd-upload2-groups"]
    group = alice.post(groups, {"sessions": [s["session-token"] for s in sessions]}, status=201).json
    # The host holds one of the filenames (another door): nothing of either project is published.
    dbsession.add(FilenameHold(filename="core_cli-1.0-py3-none-any.whl"))
    dbsession.commit()
    assert_problem(alice.post(group["links"]["publish"], status=409), 409, source="core_cli-1.0-py3-none-any.whl")
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(Artifact)) == 0
    dbsession.execute(sa.delete(FilenameHold))
    dbsession.commit()
    assert alice.post(group["links"]["publish"], status=201).json["status"] == "published"
    assert set(dbsession.scalars(sa.select(Package.canonical))) == {"core", "core-cli"}
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(Artifact)) == 2
    dbsession.commit()
