"""Fixtures: a migrated database (SQLite, or PostgreSQL with UPLOAD2_TEST_DATABASE_URL),
the full WSGI app under WebTest, API-token users, and a real server process."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import sqlalchemy as sa
import webtest

from pypi_upload2 import db, main
from pypi_upload2.admin import upgrade
from pypi_upload2.builtin.models import User
from pypi_upload2.builtin.auth import new_token

from . import openapi
from .oidc import Issuer, serve
from .artifacts import build_sdist, build_wheel  # noqa: F401  (re-exported for tests)
from .s3 import (STORAGE, keys, multipart_uploads, new_bucket, s3_any_part_endpoint, s3_api,  # noqa: F401  (fixtures)
                 s3_bucket, s3_client, s3_endpoint, s3_settings)

CT = "application/vnd.pypi.upload.v2+json"


def pytest_configure(config):
    # Every 2.0 response of a WebTest request is checked against the OpenAPI document.
    openapi.install()


def pytest_terminal_summary(terminalreporter):
    if openapi.seen and terminalreporter.config.getoption("verbose") > 0:
        missing = openapi.unseen()
        terminalreporter.write_line(f"OpenAPI: {len(openapi.seen)} responses seen; documented, not seen: "
                                    + (", ".join(" ".join(m) for m in missing) or "none"))
META = {"api-version": "2.0"}


RFC3339_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def stored(storage_dir) -> list:
    """Every file in storage, for checking that nothing is left behind."""
    return sorted(p for p in storage_dir.rglob("*") if p.is_file())


def fetch(dbsession, model, **where):
    # Fresh values, and no open transaction left behind (SQLite writers queue on it).
    dbsession.expire_all()
    obj = dbsession.scalar(sa.select(model).filter_by(**where))
    dbsession.commit()
    return obj


def count(dbsession, model) -> int:
    n = dbsession.scalar(sa.select(sa.func.count()).select_from(model))
    dbsession.commit()
    return n


def pytest_collection_modifyitems(config, items):
    if STORAGE == "s3":
        skip = pytest.mark.skip(reason="reads the local storage folder (UPLOAD2_TEST_STORAGE=s3)")
        for item in items:
            if "local_storage" in item.keywords:
                item.add_marker(skip)


@contextlib.contextmanager
def own_database(sqlite_path, prefix: str):
    """A new empty database: on the PostgreSQL server of UPLOAD2_TEST_DATABASE_URL (dropped
    afterwards), else an SQLite file at ``sqlite_path``."""
    server = os.environ.get("UPLOAD2_TEST_DATABASE_URL")
    if not server:
        yield f"sqlite:///{sqlite_path}"
        return
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    maintenance = sa.create_engine(db.normalize_url(server), isolation_level="AUTOCOMMIT")
    with maintenance.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield db.normalize_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with maintenance.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        maintenance.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    with own_database(tmp_path_factory.mktemp("db") / "test.sqlite", "upload2_test") as url:
        yield url


@pytest.fixture
def fresh_url(tmp_path):
    """A database of this test's own, empty."""
    with own_database(tmp_path / "own.sqlite", "upload2_own") as url:
        yield url


def stop_group(proc, signum=signal.SIGINT, timeout: float = 15) -> None:
    """Stop a server started with ``start_new_session=True`` (gunicorn: SIGINT is its quick
    shutdown); a process group still busy after ``timeout`` is killed."""
    os.killpg(proc.pid, signum)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def engine(database_url):
    engine = db.make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def is_postgresql(engine):
    return engine.dialect.name == "postgresql"


@pytest.fixture
def dbsession(engine):
    """A plain ORM session for arranging and inspecting state; every test starts empty."""
    session = db.session_factory(engine)()
    yield session
    session.close()
    tables = [t.name for t in reversed(db.Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                conn.exec_driver_sql(f"DELETE FROM {table}")


@pytest.fixture
def storage_dir(tmp_path):
    path = tmp_path / "files"
    path.mkdir()
    return path


@pytest.fixture
def storage_settings(request) -> dict:
    """The storage backend's settings beyond ``upload2.storage``: none for the local disk; the
    moto server's and a fresh bucket with ``UPLOAD2_TEST_STORAGE=s3``, parts of any size
    allowed (the suite appends a few KiB at a time; tests/functional/test_s3.py keeps S3's)."""
    if STORAGE != "s3":
        return {}
    endpoint = request.getfixturevalue("s3_any_part_endpoint")
    return s3_settings(endpoint, new_bucket(s3_client(endpoint)), **{"upload2.s3_min_part_size": "1"})


@pytest.fixture
def stored_keys(storage_dir, storage_settings):
    """``stored_keys()``: every key the test's storage holds, files on disk or objects and
    unassembled multipart uploads in the bucket, for checking that nothing is left behind."""
    if not storage_settings:
        return lambda: {p.relative_to(storage_dir).as_posix() for p in storage_dir.rglob("*") if p.is_file()}
    client, bucket = s3_client(storage_settings["upload2.s3_endpoint_url"]), storage_settings["upload2.s3_bucket"]
    return lambda: {*keys(client, bucket), *multipart_uploads(client, bucket)}


@pytest.fixture
def settings(database_url, storage_dir, storage_settings):
    return {"sqlalchemy.url": database_url, "upload2.storage": str(storage_dir), **storage_settings}


@pytest.fixture
def wsgi_app(settings, dbsession):
    app = main({}, **settings)
    yield app
    app.registry["upload2.engine"].dispose()


@pytest.fixture
def make_app(settings, dbsession):
    """``make_app(**settings)``: the app with extra settings, under WebTest."""
    apps = []

    def make(**extra):
        app = main({}, **settings, **extra)
        apps.append(app)
        return webtest.TestApp(app)

    yield make
    for app in apps:
        app.registry["upload2.engine"].dispose()


@pytest.fixture
def testapp(wsgi_app):
    return webtest.TestApp(wsgi_app)


@pytest.fixture
def make_user(dbsession):
    def make(username: str) -> str:
        user = dbsession.scalar(sa.select(User).where(User.username == username))
        if user is None:
            user = User(username=username)
            dbsession.add(user)
        token = new_token(dbsession, user)
        dbsession.commit()
        return token

    return make


def basic(token: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"__token__:{token}".encode()).decode()}


PROBLEM = "application/problem+json"


def assert_problem(response, status: int, source: str | None = None) -> dict:
    """Check a 2.0 error is an RFC 9457 problem shaped as the PEP's Errors section says;
    with ``source``, one of its ``errors`` must name it. Returns the body."""
    assert response.status_int == status
    assert response.content_type == PROBLEM
    body = response.json
    assert {"type", "status", "title", "detail", "meta", "errors"} <= body.keys()
    assert body["status"] == status
    assert body["meta"] == {"api-version": "2.0"}
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["errors"] and all(set(e) == {"source", "message"} for e in body["errors"])
    if source is not None:
        assert source in [e["source"] for e in body["errors"]], body
    return body


class Uploader:
    """One principal talking to the 2.0 API through WebTest, following ``links``."""

    def __init__(self, app, token, root="/2.0/"):
        self.app, self.headers, self.root = app, basic(token), root

    def _json(self, method, url, body, status):
        return getattr(self.app, method)(url, json.dumps(body), status=status,
                                         headers={**self.headers, "Content-Type": CT})

    def post(self, url, body=None, status="2*"):
        return self._json("post", url, {"meta": META, **(body or {})}, status)

    def get(self, url, status="2*", **kw):
        return self.app.get(url, headers=self.headers, status=status, **kw)

    def delete(self, url, status="2*"):
        return self.app.delete(url, headers=self.headers, status=status)

    def create_session(self, name="foo", version="1.0", status=201):
        return self.post(self.root, {"name": name, "version": version}, status=status)

    def start_file(self, session, path, status=202, **overrides):
        data = path.read_bytes()
        body = {"filename": path.name, "size": len(data),
                "hashes": {"sha256": hashlib.sha256(data).hexdigest()}, "mechanism": "http-post-bytes"}
        body.update(overrides)
        return self.post(session["links"]["upload"], body, status=status)

    def send_bytes(self, file_session, data, status=204):
        return self.app.post(file_session["mechanism"]["file_url"], data, status=status,
                             headers={**self.headers, "Content-Type": "application/octet-stream"})

    def upload(self, session, path, complete_status=201):
        """Create, transfer and complete one file; returns the completion response."""
        file_session = self.start_file(session, path).json
        self.send_bytes(file_session, path.read_bytes())
        return self.post(file_session["links"]["complete"], status=complete_status)

    def publish(self, session, status=201):
        return self.post(session["links"]["publish"], status=status)


@pytest.fixture
def issuer():
    """A local OIDC issuer of GitHub-shaped tokens, its keys served on loopback (tests/oidc.py)."""
    with serve(Issuer()) as issuer:
        yield issuer


@pytest.fixture
def gitlab_issuer():
    """Another, for GitLab-shaped tokens (an issuer URL names one kind of publisher)."""
    with serve(Issuer("gitlab-key")) as issuer:
        yield issuer


@pytest.fixture
def alice(testapp, make_user):
    return Uploader(testapp, make_user("alice"))


@pytest.fixture
def bob(testapp, make_user):
    return Uploader(testapp, make_user("bob"))


@pytest.fixture
def dist_dir(tmp_path):
    path = tmp_path / "dist"
    path.mkdir()
    return path


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def running(args: list[str], ready_url: str, **popen):
    """A process started with ``args``, once ``ready_url`` answers; terminated after."""
    proc = subprocess.Popen(args, **popen)
    try:
        wait_for(ready_url)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def server_options() -> dict:
    """Extra ``[server:main]`` options for ``server``; a test module overrides this fixture."""
    return {}


@pytest.fixture
def server(tmp_path, database_url, storage_dir, storage_settings, dbsession, server_options):
    """The standalone app in a real waitress process (``pserve``) on a free port."""
    port = free_port()
    ini = tmp_path / "server.ini"
    ini.write_text(
        "[app:main]\nuse = egg:pypi-upload2\n"
        f"sqlalchemy.url = {database_url}\nupload2.storage = {storage_dir}\n"
        + "".join(f"{key} = {value}\n" for key, value in storage_settings.items()) + "\n"
        f"[server:main]\nuse = egg:waitress#main\nlisten = 127.0.0.1:{port}\n"
        "max_request_body_size = 1073741824\n"
        + "".join(f"{key} = {value}\n" for key, value in server_options.items())
    )
    base = f"http://127.0.0.1:{port}"
    with running([os.path.join(os.path.dirname(sys.executable), "pserve"), str(ini)], base + "/simple/",
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        yield base


@contextlib.contextmanager
def gunicorn(ini, *options: str, port: int | None = None, env: dict | None = None):
    """gunicorn serving ``ini`` with ``options`` (workers, worker class, timeouts), with ``env``
    over this process's environment: unlike waitress it hands the body to the app as it arrives.
    Idle connections are kept longer than any test waits between two requests: at gunicorn's
    2 s, a client reusing one as the server closes it reads a reset."""
    port = port or free_port()
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gunicorn"), "--paste", str(ini),
                             "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--keep-alive", "60",
                             *options],
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/simple/")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc, timeout=10)
