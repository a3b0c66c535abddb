"""A second host index, for the tests: the plugin living in another Pyramid index's house.

Its own models (models.py: UUID keys, ``host_*`` tables, its own declarative base), its own
security policy (security.py: Bearer keys), its own ``request.db``, pages and services
(views.py), and its adapters for the plugin's interfaces (adapters.py). Like Warehouse, it
commits its configuration before including the plugin, with ``upload2.index = none``.
"""

from __future__ import annotations

import sqlalchemy as sa
import zope.sqlalchemy
from pyramid.config import Configurator
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from pypi_upload2.interfaces import (IAuthentication, IAuthorization, IFilenames, IProjects, IPublishedFiles,
                                     IPublisher, IReleases)


class HostSession(Session):
    """The host's ORM session class: the tests tell it from the plugin's by its type."""


def make_engine(url: str) -> sa.engine.Engine:
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        # SQLAlchemy, not pysqlite, begins transactions (so savepoints work); writers queue.
        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA foreign_keys=ON")
            dbapi_connection.execute("PRAGMA busy_timeout=30000")

        @event.listens_for(engine, "begin")
        def _begin(connection):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    return engine


def host_db(request) -> HostSession:
    """The host's session per request, joined to the host's ``request.tm``."""
    session = request.registry["host.sessions"]()
    zope.sqlalchemy.register(session, transaction_manager=request.tm)
    return session


def make_app(settings: dict):
    from .adapters import HostAuthentication, HostAuthorization, HostIndex
    from .security import BearerPolicy
    from .views import Greeting, IGreeting

    settings = {"tm.manager_hook": "pyramid_tm.explicit_manager", **settings, "upload2.index": "none"}
    config = Configurator(settings=settings)
    config.include("pyramid_tm")
    config.include("pyramid_services")
    engine = make_engine(settings["sqlalchemy.url"])
    config.registry["host.engine"] = engine
    config.registry["host.sessions"] = sessionmaker(bind=engine, class_=HostSession)
    config.add_request_method(host_db, "db", reify=True)
    config.set_security_policy(BearerPolicy())
    config.register_service(Greeting(settings.get("host.greeting", "hello from the host")), IGreeting)
    config.include(".views")
    config.commit()

    config.include("pypi_upload2")
    # After the commit, in the include's phase: the includer's action wins a conflict with the
    # plugin's. (Registered before the commit, a factory would be replaced by the plugin's own
    # for the same interface, e.g. upload2.index = builtin; with none, the plugin has none.)
    config.register_service_factory(HostAuthentication.create_service, IAuthentication)
    config.register_service_factory(HostAuthorization.create_service, IAuthorization)
    for iface in (IProjects, IReleases, IFilenames, IPublisher, IPublishedFiles):
        config.register_service_factory(HostIndex.create_service, iface)
    return config.make_wsgi_app()
