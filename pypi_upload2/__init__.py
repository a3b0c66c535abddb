"""pypi-upload2: the PEP 694 Upload 2.0 API as a Pyramid plugin.

A host index adds it with ``config.include("pypi_upload2")``; ``main`` is the
standalone app, a thin host around the same include and the built-in index.
"""

from __future__ import annotations

from .interfaces import IFileStorage, ITaskQueue

# The plugin's own backends; a host swaps one with a dotted-name setting.
BACKENDS = {
    IFileStorage: ("upload2.storage_backend", "local"),
    ITaskQueue: ("upload2.task_queue_backend", "pypi_upload2.tasks.CeleryTaskQueue"),
}
# Short names of the plugin's own backends (any other value is a dotted name).
ALIASES = {
    "local": "pypi_upload2.storage.local.LocalFileStorage",
    "s3": "pypi_upload2.storage.s3.S3FileStorage",
}
# ``upload2.index``: which host index the interfaces reach (none: the host registers its own).
INDEXES = {"builtin": "pypi_upload2.builtin", "warehouse": "pypi_upload2.warehouse", "none": None}


def _host_has(config, request_attribute: str) -> bool:
    """True when the host already gave requests ``request_attribute`` (committed before the
    include, as Warehouse's configuration is: a second registration would replace it)."""
    from pyramid.interfaces import IRequestExtensions

    extensions = config.registry.queryUtility(IRequestExtensions)
    return extensions is not None and (request_attribute in extensions.descriptors
                                       or request_attribute in extensions.methods)


def includeme(config):
    # Imported here so ``import pypi_upload2`` stays light for the release client.
    from . import db, settings as settings_module

    raw = config.get_settings()
    parsed = settings_module.parse(raw)
    config.registry["upload2.settings"] = parsed

    # The host's transaction manager and service registry stay the host's; a bare host gets them.
    if not _host_has(config, "tm"):
        config.include("pyramid_tm")
    if not hasattr(config, "register_service_factory"):
        config.include("pyramid_services")

    # The host's database session when it has one (its engine must reach the plugin's tables);
    # else one on ``sqlalchemy.url``, joined to ``request.tm``.
    if raw.get("sqlalchemy.url") and not _host_has(config, "db"):
        engine = db.make_engine(raw["sqlalchemy.url"], here=raw.get("upload2.here"))
        config.registry["upload2.engine"] = engine
        config.registry["upload2.dbsession_factory"] = db.session_factory(engine)
        config.registry["upload2.read_only_engine"] = db.read_only(engine)
        config.add_request_method(db.request_db, "db", reify=True)

    for iface, (key, default) in BACKENDS.items():
        name = raw.get(key, default).strip()
        backend = config.maybe_dotted(ALIASES.get(name, name))
        config.register_service_factory(backend.create_service, iface)
        # A backend that can tell now that it will not work (an S3 bucket out of reach) stops the start.
        if hasattr(backend, "check_settings"):
            backend.check_settings(config.registry)
    index = raw.get("upload2.index", "builtin").strip()
    if index not in INDEXES:
        raise ValueError(f"upload2.index must be one of {', '.join(INDEXES)}, not {index!r}")
    if INDEXES[index]:
        config.include(INDEXES[index])

    # Deferred work: the Celery app (eager without a broker) and the publish checks it runs.
    config.include(".tasks")
    config.include(".services.checks")

    config.include(".mechanisms")
    config.include(".views")
    config.include(".logs")


def _undecodable_url(exc, request):
    from pyramid.response import Response

    return Response("The URL's path is not valid UTF-8.\n", status=400, content_type="text/plain")


def main(global_config, **settings):
    """The standalone WSGI app (``use = egg:pypi-upload2``): the built-in index."""
    from pyramid.config import Configurator
    from pyramid.exceptions import URLDecodeError

    settings.setdefault("upload2.here", global_config.get("here"))
    settings.setdefault("tm.manager_hook", "pyramid_tm.explicit_manager")
    with Configurator(settings=settings) as config:
        config.include(includeme)
        # As the host, answer a path that does not decode (``/simple/%ff/``) with 400, not 500;
        # under the API root the plugin answers it with a problem.
        config.add_exception_view(_undecodable_url, context=URLDecodeError)
        # The built-in index's web pages (upload2.web), else a plain front page where it
        # serves its simple index (a host has its own).
        if settings.get("upload2.index", "builtin").strip() == "builtin":
            from .builtin.web.settings import enabled

            if enabled(settings):
                config.include("pypi_upload2.builtin.web")
            elif config.registry["upload2.settings"].simple_index:
                from .builtin.views import add_home

                add_home(config)
    return config.make_wsgi_app()
