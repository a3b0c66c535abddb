"""The Warehouse adapter: Upload 2.0 on a Warehouse fork's own projects, releases, files,
macaroons, permissions, archive storage and Celery (docs/warehouse.md).

Switched on by ``upload2.index = warehouse`` (or ``config.include("pypi_upload2.warehouse")``
after the plugin). Nothing staged touches Warehouse's rows: a publish creates them, as forklift
does, so no Warehouse page or API can show a staged release (its ``Release.published`` column
is not read by any of its views at the supported commit).
"""

from __future__ import annotations

import dataclasses

from ..interfaces import (IAuthentication, IAuthorization, IFilenames, IProjects, IPublishedFiles, IPublisher,
                          IReleases, ITaskQueue)


def view_options(request_method: str | None) -> dict:
    """Warehouse's view derivers on every plugin view: the methods it takes (all, for the
    method-not-allowed views), no CSRF token (the API takes no cookies: see security.py), and
    a request session, which Warehouse's session policy reads before its macaroon policy."""
    methods = False if request_method is None else [request_method] + (["HEAD"] if request_method == "GET" else [])
    return {"require_methods": methods, "require_csrf": False, "uses_session": True}


def includeme(config):
    from . import legacy
    from .index import WarehouseIndex
    from .security import WarehouseSecurity
    from .tasks import WarehouseTaskQueue

    # Forklift owns /legacy/ and Warehouse its own /simple/: the plugin adds neither.
    settings = config.registry["upload2.settings"]
    config.registry["upload2.settings"] = dataclasses.replace(settings, legacy_path="", simple_index=False)
    for iface in (IAuthentication, IAuthorization):
        config.register_service_factory(WarehouseSecurity.create_service, iface)
    for iface in (IProjects, IReleases, IFilenames, IPublisher, IPublishedFiles):
        config.register_service_factory(WarehouseIndex.create_service, iface)
    config.register_service_factory(WarehouseTaskQueue.create_service, ITaskQueue)
    config.registry["upload2.view_options"] = view_options
    config.include(".tasks")
    config.include(legacy)
