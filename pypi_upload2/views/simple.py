"""The public simple index: only published releases and files, nothing staged or reserved."""

from __future__ import annotations


import sqlalchemy as sa
from packaging.utils import InvalidName, canonicalize_name
from pyramid.httpexceptions import HTTPNotFound
from pyramid.view import view_config

from ..db import parse_id
from ..interfaces import IFileStorage
from ..models import Project, Release, ReleaseFile
from .index import Entry, canonical_redirect, core_metadata_sha256, file_response, index_page, project_page


def public_entries(request, project_id: int) -> list[Entry]:
    rows = request.db.execute(
        sa.select(ReleaseFile, Release.version)
        .join(Release)
        .where(Release.project_id == project_id, Release.published, ReleaseFile.published_at.is_not(None))
        .order_by(ReleaseFile.filename)
    )
    return [
        Entry(filename=f.filename, url=request.route_url("simple.file", file_id=f.id, filename=f.filename),
              version=version, size=f.size, sha256=f.sha256, requires_python=f.requires_python,
              metadata_sha256=core_metadata_sha256(f), upload_time=f.published_at)
        for f, version in rows
    ]


def _visible(query):
    """Registered projects with a published release: never a reservation or a staged version."""
    published = sa.select(Release.project_id).where(Release.published)
    return query.where(Project.registered_at.is_not(None), Project.id.in_(published))


@view_config(route_name="simple.index", request_method="GET")
def simple_index(request):
    projects = request.db.execute(
        _visible(sa.select(Project.name, Project.normalized_name)).order_by(Project.normalized_name)).all()
    return index_page(request, [tuple(p) for p in projects],
                      lambda n: request.route_url("simple.project", name=n))


@view_config(route_name="simple.project", request_method="GET")
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
    return project_page(request, project.name, normalized, public_entries(request, project.id))


@view_config(route_name="simple.file", request_method="GET")
def simple_file(request):
    filename = request.matchdict["filename"]
    metadata = filename.endswith(".metadata")
    file_id = parse_id(request.matchdict["file_id"])
    f = request.db.get(ReleaseFile, file_id) if file_id is not None else None
    if (f is None or f.published_at is None or f.filename != filename.removesuffix(".metadata")
            or (metadata and not core_metadata_sha256(f))):
        raise HTTPNotFound()
    storage = request.find_service(IFileStorage)
    return file_response(request, storage.path(f.metadata_key if metadata else f.blob_key), f.filename,
                         metadata=metadata)
