"""The public pages: the front page (search, recent releases), a project and a release.
Only published releases are shown; a staged one appears only to its maintainers, as a
banner linking to its session page."""

from __future__ import annotations

import sqlalchemy as sa
from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version
from pyramid.httpexceptions import HTTPMovedPermanently, HTTPNotFound
from pyramid.view import view_config

from ... import states
from ...interfaces import IPublishedFiles
from ...models import PublishingSession
from ...services import loading
from ...services.versions import canonical_version
from ..models import Project, Release, ReleaseFile

RECENT = 10
MAX_RESULTS = 50


def _published():
    """Releases with a published file."""
    return sa.select(Release).where(Release.id.in_(sa.select(ReleaseFile.release_id)))


def staged(request, normalized: str, version: str | None = None) -> list[PublishingSession]:
    """The live sessions of a project (of one canonical version) that the signed-in user may
    upload to, by the API's authorization; none for anyone else."""
    if request.web_user is None:
        return []
    query = sa.select(PublishingSession).where(
        PublishingSession.normalized_name == normalized,
        PublishingSession.status.in_(states.LIVE_PUBLISHING)).order_by(PublishingSession.id)
    if version is not None:
        query = query.where(PublishingSession.canonical_version == version)
    return [s for s in request.db.scalars(query) if loading.may_upload(request, request.web_user, s)[0]]


def _normalized(request, name: str) -> str:
    try:
        normalized = canonicalize_name(name, validate=True)
    except InvalidName:
        raise HTTPNotFound()
    return normalized


@view_config(route_name="web.home", request_method="GET", renderer="home.html")
def home(request):
    query = request.params.get("q", "").strip()
    results = None
    if query:
        # Names compare normalized, so "Foo_Bar" finds foo-bar.
        needle = canonicalize_name(query)
        results = request.db.scalars(
            sa.select(Project).where(Project.id.in_(_published().with_only_columns(Release.project_id)),
                                     Project.normalized_name.contains(needle, autoescape=True))
            .order_by(Project.normalized_name).limit(MAX_RESULTS)).all()
    recent = request.db.execute(
        _published().add_columns(Project.name, Project.normalized_name).join(Project)
        .order_by(Release.published_at.desc(), Release.id.desc()).limit(RECENT)).all()
    return {"query": query, "results": results, "recent": recent}


def _project(request) -> tuple[str, Project | None]:
    name = request.matchdict["name"]
    normalized = _normalized(request, name)
    if name != normalized:
        raise HTTPMovedPermanently(request.current_route_url(name=normalized))
    return normalized, request.db.scalar(sa.select(Project).where(Project.normalized_name == normalized))


def _releases(request, project: Project | None) -> list[Release]:
    if project is None:
        return []
    found = request.db.scalars(_published().where(Release.project_id == project.id)).all()
    return sorted(found, key=lambda r: Version(r.version), reverse=True)


def _files(request, project: Project, release: Release) -> list:
    entries = request.find_service(IPublishedFiles).entries(request, project)
    return [e for e in entries if e.version == release.version]


@view_config(route_name="web.project", request_method="GET", renderer="project.html")
def project_page(request):
    normalized, project = _project(request)
    releases = _releases(request, project)
    banners = staged(request, normalized)
    if not releases and not banners:
        raise HTTPNotFound()
    latest = releases[0] if releases else None
    return {"name": project.name if project else banners[0].name, "normalized": normalized,
            "releases": releases, "latest": latest,
            "files": _files(request, project, latest) if latest else [], "staged": banners}


@view_config(route_name="web.release", request_method="GET", renderer="release.html")
def release_page(request):
    normalized, project = _project(request)
    try:
        version = canonical_version(Version(request.matchdict["version"]))
    except InvalidVersion:
        raise HTTPNotFound()
    release = next((r for r in _releases(request, project) if r.canonical_version == version), None)
    banners = staged(request, normalized, version)
    if release is None and not banners:
        raise HTTPNotFound()
    return {"name": project.name if project else banners[0].name, "normalized": normalized,
            "version": release.version if release else banners[0].version, "release": release,
            "files": _files(request, project, release) if release else [], "staged": banners}
