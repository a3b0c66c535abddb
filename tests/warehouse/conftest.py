"""Fixtures for the Warehouse adapter: a real Warehouse app (from the importable ``warehouse``
package) on PostgreSQL and Redis, with the plugin included as a Warehouse fork would include it.

Run, in an environment where Warehouse and its pinned requirements are installed::

    cd /work/main && /work/wh/venv/bin/python -m pytest -q -p no:cacheprovider -p no:logging \
        -p no:warnings -c /dev/null --rootdir /work/main tests/warehouse

``-c /dev/null`` leaves out setup.cfg's ``filterwarnings = error``: under Warehouse's pins,
pyramid's own ``import pkg_resources`` warns while tests/conftest.py is imported, and Warehouse
warns on purpose about its development backends. ``-p no:logging -p no:warnings`` only keep
Warehouse's JSON logs and those warnings out of the report.

Skipped (with the reason) when ``warehouse`` is not importable, or when no PostgreSQL server
answers at ``UPLOAD2_TEST_WAREHOUSE_DATABASE_URL`` (else ``UPLOAD2_TEST_DATABASE_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``), or no Redis at
``UPLOAD2_TEST_WAREHOUSE_REDIS_URL`` (default ``redis://127.0.0.1:6379/13``, flushed at start).

The app is built like Warehouse's own test-suite builds it (tests/conftest.py
``get_app_config``: its settings, ``warehouse.config.configure()`` with the static manifests
mocked, ``alembic upgrade head``), then ``upload2.*`` settings, ``config.include("pypi_upload2")``
and ``make_wsgi_app()``; the plugin's session tables go into the same database with
``pypi_upload2.admin.upgrade(engine, core_only=True)``. Unlike the suite, requests commit (the
plugin's work is transactional), so one database serves the whole run and each test uses
project names of its own. Warehouse's Celery runs eagerly, after commit, in the process.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import inspect
import os
import secrets
import subprocess
import sys
import uuid
from unittest import mock

import pytest

REASON = ("the Warehouse adapter tests need an importable Warehouse "
          "(a checkout at f5cd84fe68a4 with its pinned requirements)")
HERE = os.path.dirname(os.path.abspath(__file__))

try:
    pytest.importorskip("warehouse", reason=REASON)
    MISSING = None
except pytest.skip.Exception as skipped:
    # Not raised on: pytest cannot skip from a conftest it loads before collection (as it does
    # for ``pytest tests/warehouse``); the tests import Warehouse only inside themselves, so
    # they collect, and each is skipped with the reason instead.
    MISSING = skipped.msg


def pytest_collection_modifyitems(config, items):
    if MISSING:
        for item in items:
            if str(item.path).startswith(HERE + os.sep):
                item.add_marker(pytest.mark.skip(reason=MISSING))

import sqlalchemy as sa  # noqa: E402
import webtest  # noqa: E402

from tests.conftest import Uploader, basic, free_port, wait_for  # noqa: E402

SERVER_URL = (os.environ.get("UPLOAD2_TEST_WAREHOUSE_DATABASE_URL") or os.environ.get("UPLOAD2_TEST_DATABASE_URL")
              or "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("UPLOAD2_TEST_WAREHOUSE_REDIS_URL", "redis://127.0.0.1:6379/13")
ROOT = "/2.0/"


def pg_url(url: str, database: str | None = None) -> sa.engine.URL:
    parsed = sa.engine.make_url(url).set(drivername="postgresql+psycopg")
    return parsed.set(database=database) if database else parsed


def warehouse_settings(database_url: str, files, redis_url: str) -> dict:
    """The settings of Warehouse's test-suite (``get_app_config``), Redis and paths made local."""
    local = {name: str(files / name) for name in ("files", "archive", "simple", "docs", "sponsorlogos")}
    for path in local.values():
        os.makedirs(path, exist_ok=True)
    return {
        "warehouse.prevent_esi": True, "warehouse.token": "insecure token", "warehouse.ip_salt": "insecure salt",
        "token.confirm_login.secret": "insecure token", "camo.url": "http://localhost:9000/",
        "camo.key": "insecure key", "celery.broker_redis_url": redis_url, "celery.result_url": redis_url,
        "celery.scheduler_url": redis_url, "database.url": database_url, "docs.url": "http://docs.example.com/",
        "ratelimit.url": "memory://", "db_results_cache.url": redis_url,
        "opensearch.url": "https://localhost/warehouse",
        "files.backend": "warehouse.packaging.services.LocalFileStorage", "files.path": local["files"],
        "archive_files.backend": "warehouse.packaging.services.LocalArchiveFileStorage",
        "archive_files.path": local["archive"],
        "simple.backend": "warehouse.packaging.services.LocalSimpleStorage", "simple.path": local["simple"],
        "docs.backend": "warehouse.packaging.services.LocalDocsStorage", "docs.path": local["docs"],
        "sponsorlogos.backend": "warehouse.admin.services.LocalSponsorLogoStorage",
        "sponsorlogos.path": local["sponsorlogos"],
        "billing.backend": "warehouse.subscriptions.services.MockStripeBillingService",
        "billing.api_base": "http://stripe:12111", "billing.api_version": "2020-08-27",
        "mail.backend": "warehouse.email.services.SMTPEmailSender",
        "helpdesk.backend": "warehouse.helpdesk.services.ConsoleHelpDeskService",
        "helpdesk.notification_backend": "warehouse.helpdesk.services.ConsoleAdminNotificationService",
        "files.url": "http://localhost:7000/", "archive_files.url": "http://localhost:7000/archive",
        "sessions.secret": "123456", "sessions.url": redis_url,
        "statuspage.url": "https://2p66nmmycsj3.statuspage.io", "warehouse.xmlrpc.cache.url": redis_url,
        "terms.revision": "initial", "oidc.jwk_cache_url": redis_url, "warehouse.oidc.audience": "pypi",
        "oidc.backend": "warehouse.oidc.services.NullOIDCPublisherService",
        "integrity.backend": "warehouse.attestations.services.NullIntegrityService",
        "github.oauth.backend": "warehouse.accounts.oauth.NullGitHubOAuthClient",
        "gitlab.oauth.backend": "warehouse.accounts.oauth.NullGitLabOAuthClient",
        "captcha.backend": "warehouse.captcha.hcaptcha.Service",
    }


def _configure_environment() -> list[str]:
    """The environment variables ``warehouse.config.configure()`` reads (``maybe_set*`` calls)."""
    import warehouse.config

    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(warehouse.config))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "").startswith("maybe_set"):
            index = 3 if node.func.id == "maybe_set_compound" else 2
            if len(node.args) > index and isinstance(node.args[index], ast.Constant):
                names.add(node.args[index].value)
    return sorted(names)


def configure(settings: dict):
    """``warehouse.config.configure()`` as the suite calls it: no Warehouse variable in the
    environment, and the static asset manifests (an npm build) mocked out."""
    from pyramid.static import ManifestCacheBuster
    from warehouse import config, static

    class NoManifest(ManifestCacheBuster):
        def __init__(self, *args, strict=True, **kwargs):
            super().__init__(*args, **kwargs)

        def get_manifest(self):
            return {}

    saved = {name: os.environ.pop(name) for name in _configure_environment() if name in os.environ}
    try:
        with (mock.patch.object(config, "ManifestCacheBuster", NoManifest),
              mock.patch("warehouse.admin.ManifestCacheBuster", NoManifest),
              mock.patch.object(static, "whitenoise_add_manifest")):
            cfg = config.configure(settings=settings)
    finally:
        os.environ.update(saved)
    celery = cfg.registry["celery.app"]
    celery.conf.task_always_eager, celery.conf.task_eager_propagates = True, True
    cfg.add_settings(enforce_https=False)
    return cfg


def build_app(database_url: str, files, storage, redis_url: str = REDIS_URL, extra: dict | None = None,
              plugin: bool = True):
    """The Warehouse WSGI app, with the plugin included after ``configure()``."""
    cfg = configure({**warehouse_settings(database_url, files, redis_url), **(extra or {})})
    if plugin:
        cfg.add_settings({"upload2.index": "warehouse", "upload2.storage": str(storage), "upload2.root_path": ROOT})
        cfg.include("pypi_upload2")
    app = cfg.make_wsgi_app()
    app.registry, app.engine = cfg.registry, cfg.registry["sqlalchemy.engine"]
    return app


def create_database(server_url: str, name: str) -> str:
    admin = sa.create_engine(pg_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    return pg_url(server_url, name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    admin = sa.create_engine(pg_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


# -- services ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def wh_services():
    try:
        engine = sa.create_engine(pg_url(SERVER_URL), connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no PostgreSQL server at {SERVER_URL} ({type(exc).__name__}); "
                    "set UPLOAD2_TEST_WAREHOUSE_DATABASE_URL")
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).flushdb()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Redis at {REDIS_URL} ({type(exc).__name__}); set UPLOAD2_TEST_WAREHOUSE_REDIS_URL")
    return SERVER_URL, REDIS_URL


@pytest.fixture(scope="session")
def wh_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("warehouse")
    return root / "files", root / "upload2"


@pytest.fixture(scope="session")
def wh_database(wh_services, wh_paths):
    """A database with Warehouse's schema (its alembic history) and the plugin's session tables."""
    import alembic.command

    from pypi_upload2.admin import upgrade

    name = f"wh_upload2_{os.getpid()}_{secrets.token_hex(3)}"
    url = create_database(wh_services[0], name)
    cfg = configure(warehouse_settings(url, wh_paths[0], wh_services[1]))
    alembic.command.upgrade(cfg.alembic_config(), "head")
    engine = cfg.registry["sqlalchemy.engine"]
    upgrade(engine, core_only=True)
    engine.dispose()
    yield url
    drop_database(wh_services[0], name)


@pytest.fixture(scope="session")
def wh_app(wh_database, wh_paths, wh_services):
    """The Warehouse WSGI app with the plugin, shared by every test."""
    app = build_app(wh_database, wh_paths[0], wh_paths[1], wh_services[1])
    yield app
    app.engine.dispose()


@pytest.fixture(scope="session")
def wh_plain_app(wh_database, wh_paths, wh_services):
    """The same Warehouse without the plugin, to compare pages with."""
    app = build_app(wh_database, wh_paths[0], wh_paths[1], wh_services[1], plugin=False)
    yield app
    app.engine.dispose()


@pytest.fixture
def wh_testapp(wh_app):
    return webtest.TestApp(wh_app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})


# A real server process: the Warehouse app with the plugin, served by waitress.
SERVE = """
import pathlib, sys
from waitress import serve
from tests.warehouse.conftest import build_app
database, files, storage, redis_url, port = sys.argv[1:]
app = build_app(database, pathlib.Path(files), pathlib.Path(storage), redis_url)
serve(app, host="127.0.0.1", port=int(port), threads=4)
"""


@pytest.fixture
def served(wh_database, wh_paths, wh_services, tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", SERVE, wh_database, str(wh_paths[0]), str(wh_paths[1]),
                             wh_services[1], str(port)],
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/simple/", timeout=90)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture
def archive_dir(wh_paths):
    return wh_paths[0] / "archive"


# -- arranging through Warehouse's own services ----------------------------------------------------

@contextlib.contextmanager
def warehouse_request(app):
    """A scripted request on the app's registry, as Warehouse's task base builds one; its
    transaction commits on a clean exit."""
    import pyramid.scripting
    import transaction

    env = pyramid.scripting.prepare(registry=app.registry)
    request = env["request"]
    request.tm = transaction.TransactionManager(explicit=True)
    request.remote_addr = "127.0.0.1"
    request.remote_addr_hashed = hashlib.sha256(
        ("127.0.0.1" + app.registry.settings["warehouse.ip_salt"]).encode()).hexdigest()
    try:
        with request.tm:
            yield request
    finally:
        request._process_finished_callbacks()
        env["closer"]()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Warehouse:
    """Users, projects and API tokens made with Warehouse's services, and row lookups."""

    def __init__(self, app):
        self.app = app

    def user(self, username: str | None = None, *, two_factor: bool = True):
        """A user with a verified primary email (and TOTP), as forklift requires; returns its id."""
        from warehouse.accounts.interfaces import IUserService

        username = username or unique("user")
        with warehouse_request(self.app) as request:
            users = request.find_service(IUserService, context=None)
            user = users.create_user(username, username.title(), "password")
            users.add_email(user.id, f"{username}@example.com", primary=True, verified=True, ratelimit=False)
            if two_factor:
                user.totp_secret = os.urandom(20)
            request.db.flush()
            return user.id

    def project(self, name: str, owner_id, role: str | None = None):
        """``ProjectService.create_project`` (Owner role, journal, events)."""
        from warehouse.accounts.models import User
        from warehouse.packaging.interfaces import IProjectService

        with warehouse_request(self.app) as request:
            owner = request.db.get(User, owner_id)
            project = request.find_service(IProjectService, context=None).create_project(
                name, owner, request, ratelimited=False)
            return project.id

    def add_role(self, project_name: str, user_id, role: str = "Maintainer") -> None:
        from warehouse.accounts.models import User
        from warehouse.packaging.models import Project, Role

        with warehouse_request(self.app) as request:
            project = request.db.scalar(sa.select(Project).where(Project.name == project_name))
            request.db.add(Role(user=request.db.get(User, user_id), project=project, role_name=role))

    def token(self, user_id, project_name: str | None = None) -> str:
        """A serialized macaroon: project-scoped (ProjectName + ProjectID) or user-scoped."""
        from warehouse.accounts.models import User
        from warehouse.macaroons import caveats
        from warehouse.macaroons.interfaces import IMacaroonService
        from warehouse.packaging.models import Project

        with warehouse_request(self.app) as request:
            user = request.db.get(User, user_id)
            if project_name is not None:
                project = request.db.scalar(sa.select(Project).where(Project.name == project_name))
                scopes = [caveats.ProjectName(normalized_names=[project.normalized_name]),
                          caveats.ProjectID(project_ids=[str(project.id)])]
            else:
                scopes = [caveats.RequestUser(user_id=str(user.id))]
            serialized, _ = request.find_service(IMacaroonService, context=None).create_macaroon(
                location="localhost", description=unique("token"), scopes=scopes, user_id=user.id,
                additional={"made_with_2fa": user.has_two_factor})
            return serialized

    def query(self, statement):
        """Rows of ``statement``, read in a fresh session."""
        from sqlalchemy.orm import Session

        with Session(self.app.engine) as session:
            return session.execute(statement).all()


@pytest.fixture
def wh(wh_app):
    return Warehouse(wh_app)


@pytest.fixture
def owner(wh, wh_testapp):
    """A user owning a new project ``name``, with an Uploader holding a user-scoped token."""
    name = unique("pkg")
    user_id = wh.user()
    wh.project(name, user_id)
    token = wh.token(user_id)
    uploader = Uploader(wh_testapp, token, root=ROOT)
    uploader.user_id, uploader.project, uploader.token = user_id, name, token
    return uploader


@pytest.fixture
def dist_dir(tmp_path):
    path = tmp_path / "dist"
    path.mkdir()
    return path


__all__ = ["Uploader", "basic", "warehouse_request", "unique", "build_app", "ROOT"]
