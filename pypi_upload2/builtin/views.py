"""The built-in index's public simple index: published releases and files only (nothing
staged is in its tables)."""

from __future__ import annotations

import html

import sqlalchemy as sa
from packaging.utils import InvalidName, canonicalize_name
from pyramid.httpexceptions import HTTPNotFound
from pyramid.response import Response

from ..db import parse_id
from ..interfaces import IPublishedFiles
from ..views.index import (canonical_redirect, core_metadata_sha256, file_response, index_page, project_page,
                           provenance_response)
from .models import Project, Release, ReleaseFile


def _visible(query):
    """Projects with a published file."""
    return query.where(Project.id.in_(sa.select(Release.project_id).join(ReleaseFile)))


def simple_index(request):
    projects = request.db.execute(
        _visible(sa.select(Project.name, Project.normalized_name)).order_by(Project.normalized_name)).all()
    return index_page(request, [tuple(p) for p in projects],
                      lambda n: request.route_url("simple.project", name=n))


def simple_project(request):
    name = request.matchdict["name"]
    try:
        normalized = canonicalize_name(name, validate=True)
    except InvalidName:  # no project has such a name (and a NUL byte would fail the query)
        raise HTTPNotFound()
    canonical_redirect(request, name, normalized)
    project = request.db.scalar(_visible(sa.select(Project)).where(Project.normalized_name == normalized))
    if project is None:
        raise HTTPNotFound()
    return project_page(request, project.name, normalized,
                        request.find_service(IPublishedFiles).entries(request, project))


def simple_file(request):
    filename = request.matchdict["filename"]
    metadata = filename.endswith(".metadata")
    file_id = parse_id(request.matchdict["file_id"])
    f = request.db.get(ReleaseFile, file_id) if file_id is not None else None
    if (f is None or f.filename != filename.removesuffix(".metadata")
            or (metadata and not core_metadata_sha256(f))):
        raise HTTPNotFound()
    return file_response(request, f.metadata_key if metadata else f.blob_key, f.filename, metadata=metadata,
                         last_modified=f.published_at)


def simple_provenance(request):
    """The PEP 740 provenance object of a published file: its attestations, with the trusted
    publisher each was verified against."""
    file_id = parse_id(request.matchdict["file_id"])
    f = request.db.get(ReleaseFile, file_id) if file_id is not None else None
    if f is None or f.filename != request.matchdict["filename"] or not f.provenance:
        raise HTTPNotFound()
    return provenance_response(f.provenance)


HOME = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Package index</title></head>
<body>
<h1>Package index</h1>
<ul>
<li>Install from the simple index: <code>pip install --index-url {simple} NAME</code> (<a href="{simple}">{simple}</a>)</li>
<li>Upload 2.0 API (<a href="https://peps.python.org/pep-0694/">PEP 694</a>): <a href="{root}">{root}</a></li>
{legacy}</ul>
<p>The server's documentation is in the <code>docs/</code> folder of its source.</p>
</body>
</html>
"""


def home(request):
    """The standalone server's front page: where to install from and upload to."""
    legacy = ""
    if request.registry["upload2.settings"].legacy_path:
        url = html.escape(request.route_url("upload2.legacy"))
        legacy = f'<li>Legacy uploads (twine, uv publish): <a href="{url}">{url}</a></li>\n'
    return Response(HOME.format(simple=html.escape(request.route_url("simple.index")),
                                root=html.escape(request.route_url("upload2.root")), legacy=legacy),
                    content_type="text/html", charset="utf-8")


def add_home(config):
    config.add_route("home", "/")
    config.add_view(home, route_name="home", request_method="GET")


def includeme(config):
    config.add_route("simple.index", "/simple/")
    config.add_route("simple.project", "/simple/{name}/")
    config.add_route("simple.file", "/files/{file_id}/{filename}")
    config.add_route("simple.provenance", "/integrity/{file_id}/{filename}/provenance")
    config.add_view(simple_index, route_name="simple.index", request_method="GET")
    config.add_view(simple_project, route_name="simple.project", request_method="GET")
    config.add_view(simple_file, route_name="simple.file", request_method="GET")
    config.add_view(simple_provenance, route_name="simple.provenance", request_method="GET")
