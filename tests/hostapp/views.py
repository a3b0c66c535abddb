"""The host's own pages: a home page, its simple index of published artifacts (PEP 503
HTML), and the file route serving them from its own storage folder."""

from __future__ import annotations

import html
import os
import uuid

import sqlalchemy as sa
from packaging.utils import canonicalize_name
from pyramid.httpexceptions import HTTPMovedPermanently, HTTPNotFound
from pyramid.response import FileResponse, Response
from zope.interface import Interface

from .models import Artifact, Package, PackageVersion


class IGreeting(Interface):
    """A service of the host's own, registered with pyramid_services."""

    def greet(request):
        """The home page's greeting."""


class Greeting:
    def __init__(self, text: str):
        self.text = text

    def greet(self, request) -> str:
        return f"{self.text} (db session: {type(request.db).__name__})"


def _page(title: str, links: list[str]) -> Response:
    body = f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head><body>\n"
    return Response(body + "<br>\n".join(links) + "\n</body></html>", content_type="text/html")


def home(request):
    return Response(request.find_service(IGreeting).greet(request), content_type="text/plain")


def simple_index(request):
    packages = request.db.scalars(sa.select(Package).order_by(Package.canonical)).all()
    url = lambda p: request.route_url("host.project", name=p.canonical)  # noqa: E731
    return _page("Simple index", [f'<a href="{html.escape(url(p))}">{html.escape(p.display)}</a>'
                                  for p in packages])


def simple_project(request):
    name = request.matchdict["name"]
    if (canonical := canonicalize_name(name)) != name:
        raise HTTPMovedPermanently(location=request.route_url("host.project", name=canonical))
    package = request.db.scalar(sa.select(Package).where(Package.canonical == canonical))
    if package is None:
        raise HTTPNotFound()
    artifacts = request.db.scalars(sa.select(Artifact).join(PackageVersion)
                                   .where(PackageVersion.package_id == package.id).order_by(Artifact.filename))
    links = []
    for a in artifacts:
        url = request.route_url("host.file", artifact_id=a.id, filename=a.filename) + f"#sha256={a.sha256}"
        python = f' data-requires-python="{html.escape(a.requires_python)}"' if a.requires_python else ""
        links.append(f'<a href="{html.escape(url)}"{python}>{html.escape(a.filename)}</a>')
    return _page(f"Links for {package.display}", links)


def download(request):
    try:
        artifact_id = uuid.UUID(request.matchdict["artifact_id"])
    except ValueError:
        raise HTTPNotFound()
    artifact = request.db.get(Artifact, artifact_id)
    if artifact is None or artifact.filename != request.matchdict["filename"]:
        raise HTTPNotFound()
    path = os.path.join(request.registry.settings["host.files"], artifact.path)
    return FileResponse(path, request=request, content_type="application/octet-stream")


def includeme(config):
    config.add_route("host.home", "/")
    config.add_route("host.simple", "/simple/")
    config.add_route("host.project", "/simple/{name}/")
    config.add_route("host.file", "/packages/{artifact_id}/{filename}")
    for view, route in ((home, "host.home"), (simple_index, "host.simple"), (simple_project, "host.project"),
                        (download, "host.file")):
        config.add_view(view, route_name=route, request_method="GET")
