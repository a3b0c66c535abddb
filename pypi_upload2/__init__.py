"""pypi-upload2: the PEP 694 Upload 2.0 API as a Pyramid plugin.

A host index adds it with ``config.include("pypi_upload2")``; ``main`` is the
standalone app, a thin host that supplies only what a host would otherwise provide.
"""

from __future__ import annotations

from .interfaces import IAuthentication, IAuthorization, IFileStorage, ITaskQueue

# Each capability's default backend; a host swaps one with a dotted-name setting.
BACKENDS = {
    IFileStorage: ("upload2.storage_backend", "pypi_upload2.services.storage.LocalFileStorage"),
    IAuthentication: ("upload2.authentication_backend", "pypi_upload2.services.auth.TokenAuthentication"),
    IAuthorization: ("upload2.authorization_backend", "pypi_upload2.services.auth.RoleAuthorization"),
    ITaskQueue: ("upload2.task_queue_backend", "pypi_upload2.tasks.CeleryTaskQueue"),
}


def includeme(config):
    # Imported here so ``import pypi_upload2`` stays light for the release client.
    from . import db, settings as settings_module

    raw = config.get_settings()
    parsed = settings_module.parse(raw)
    config.registry["upload2.settings"] = parsed

    # The host's transaction manager and service registry, if it has not set them up.
    config.include("pyramid_tm")
    config.include("pyramid_services")

    engine = db.make_engine(raw["sqlalchemy.url"], here=raw.get("upload2.here"))
    config.registry["upload2.engine"] = engine
    config.registry["upload2.dbsession_factory"] = db.session_factory(engine)
    config.add_request_method(db.request_db, "db", reify=True)

    for iface, (key, default) in BACKENDS.items():
        backend = config.maybe_dotted(raw.get(key, default))
        config.register_service_factory(backend.create_service, iface)

    # Deferred work: the Celery app (eager without a broker) and the publish checks it runs.
    config.include(".tasks")
    config.include(".services.checks")

    config.include(".mechanisms")
    config.include(".views")


def main(global_config, **settings):
    """The standalone WSGI app (``use = egg:pypi-upload2``)."""
    from pyramid.config import Configurator

    settings.setdefault("upload2.here", global_config.get("here"))
    settings.setdefault("tm.manager_hook", "pyramid_tm.explicit_manager")
    with Configurator(settings=settings) as config:
        config.include(includeme)
    return config.make_wsgi_app()
