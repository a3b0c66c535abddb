"""The stage preview: a simple index of one live publishing session, or of every session of a
release group (one index root over several projects, for pip's ``--index-url``), reached by its
token."""

from __future__ import annotations

from packaging.utils import canonicalize_name
from .registration import upload2_view

from ..interfaces import IPublishedFiles
from ..problems import NotFound, RangeNotSatisfiable
from ..services import attestations, loading
from ..services.publishing import live_files
from ..states import TERMINAL_PUBLISHING, FileStatus
from .index import (Entry, canonical_redirect, core_metadata_sha256, file_response, index_page, project_page,
                    provenance_response)


def _private(response):
    # The URL is a secret: keep it out of shared caches and search engines.
    response.headers["X-Robots-Tag"] = "noindex"
    response.cache_control = "private, no-store"
    return response


def _staged_entries(request, session, file_route: str, token: str) -> list[Entry]:
    # A file's provenance is at its own session's stage, a group's stage included.
    return [
        Entry(filename=f.filename,
              url=request.route_url(file_route, token=token, file_id=f.id, filename=f.filename),
              version=session.version, size=f.received_size, sha256=f.sha256,
              requires_python=f.requires_python, metadata_sha256=core_metadata_sha256(f), upload_time=None,
              provenance=request.route_url("upload2.stage.provenance", token=session.token, file_id=f.id,
                                           filename=f.filename) if f.attested else None)
        for f in _completed(session)
    ]


def _completed(session):
    return [f for f in live_files(session) if f.status == FileStatus.COMPLETED]


def _index(request, sessions, project_route: str, token: str):
    return _private(index_page(request, [(s.name, s.normalized_name) for s in sessions],
                               lambda n: request.route_url(project_route, token=token, name=n)))


def _project(request, sessions, file_route: str, token: str):
    """A project's page: its staged files, and the project's published ones."""
    name = request.matchdict["name"]
    normalized = canonicalize_name(name)
    session = next((s for s in sessions if s.normalized_name == normalized), None)
    if session is None:
        raise NotFound("No such project", f"This stage holds only {', '.join(s.name for s in sessions) or 'nothing'}.",
                       source="url")
    canonical_redirect(request, name, normalized, token=token)
    entries = _staged_entries(request, session, file_route, token)
    if (project := loading.project(request, session)) is not None:
        entries += request.find_service(IPublishedFiles).entries(request, project)
    return _private(project_page(request, session.name, normalized, sorted(entries, key=lambda e: e.filename)))


def _file(request, sessions):
    filename = request.matchdict["filename"]
    metadata = filename.endswith(".metadata")
    file_id = request.matchdict["file_id"]
    match = [f for session in sessions for f in live_files(session)
             if str(f.id) == file_id and f.filename == filename.removesuffix(".metadata")
             and f.status == FileStatus.COMPLETED and (core_metadata_sha256(f) or not metadata)]
    if not match:
        raise NotFound("No such file", "This stage has no such file.", source="url")
    f = match[0]
    response = file_response(request, f.metadata_key if metadata else f.blob_key, f.filename, metadata=metadata,
                             last_modified=f.received_at)
    _check_range(request, response)
    return _private(response)


@upload2_view(route_name="upload2.stage", request_method="GET")
def stage_index(request):
    session = loading.live_stage(request)
    return _index(request, [session], "upload2.stage.project", session.token)


@upload2_view(route_name="upload2.stage.project", request_method="GET")
def stage_project(request):
    session = loading.live_stage(request)
    return _project(request, [session], "upload2.stage.file", session.token)


@upload2_view(route_name="upload2.stage.file", request_method="GET")
def stage_file(request):
    return _file(request, [loading.live_stage(request)])


@upload2_view(route_name="upload2.stage.provenance", request_method="GET")
def stage_provenance(request):
    session = loading.live_stage(request)
    match = [f for f in _completed(session)
             if str(f.id) == request.matchdict["file_id"] and f.filename == request.matchdict["filename"]]
    provenance = attestations.provenance(match[0]) if match else None
    if provenance is None:
        raise NotFound("No such provenance", "This stage has no attested file at this URL.", source="url")
    return _private(provenance_response(provenance))


def _group_sessions(request):
    group = loading.live_group_stage(request)
    return group, [s for s in group.sessions if s.status not in TERMINAL_PUBLISHING]


@upload2_view(route_name="upload2.group.stage", request_method="GET")
def group_stage_index(request):
    group, sessions = _group_sessions(request)
    return _index(request, sessions, "upload2.group.stage.project", group.token)


@upload2_view(route_name="upload2.group.stage.project", request_method="GET")
def group_stage_project(request):
    group, sessions = _group_sessions(request)
    return _project(request, sessions, "upload2.group.stage.file", group.token)


@upload2_view(route_name="upload2.group.stage.file", request_method="GET")
def group_stage_file(request):
    return _file(request, _group_sessions(request)[1])


def _check_range(request, response) -> None:
    """A Range outside the file is a problem, as every error under the root is; WebOb would
    answer its own text/plain 416. The test is WebOb's own (``conditional_response_app``)."""
    if (request.range and response.status_int == 200 and response in request.if_range
            and request.range.content_range(response.content_length) is None):
        response.app_iter.close()  # the file it opened is not sent
        raise RangeNotSatisfiable("Range not satisfiable", f"The file is {response.content_length} bytes.",
                                  source="Range", headers={"Content-Range": f"bytes */{response.content_length}"})
