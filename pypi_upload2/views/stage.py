"""The stage preview: a simple index of one live publishing session, reached by its token."""

from __future__ import annotations

from packaging.utils import canonicalize_name
from .registration import upload2_view

from ..interfaces import IPublishedFiles
from ..problems import NotFound, RangeNotSatisfiable
from ..services import loading
from ..services.publishing import live_files
from ..states import FileStatus
from .index import Entry, canonical_redirect, core_metadata_sha256, file_response, index_page, project_page


def _private(response):
    # The URL is a secret: keep it out of shared caches and search engines.
    response.headers["X-Robots-Tag"] = "noindex"
    response.cache_control = "private, no-store"
    return response


def _staged_entries(request, session) -> list[Entry]:
    return [
        Entry(filename=f.filename,
              url=request.route_url("upload2.stage.file", token=session.token, file_id=f.id, filename=f.filename),
              version=session.version, size=f.received_size, sha256=f.sha256,
              requires_python=f.requires_python, metadata_sha256=core_metadata_sha256(f), upload_time=None)
        for f in live_files(session) if f.status == FileStatus.COMPLETED
    ]


@upload2_view(route_name="upload2.stage", request_method="GET")
def stage_index(request):
    session = loading.live_stage(request)
    normalized = session.normalized_name
    return _private(index_page(request, [(session.name, normalized)],
                               lambda n: request.route_url("upload2.stage.project", token=session.token, name=n)))


@upload2_view(route_name="upload2.stage.project", request_method="GET")
def stage_project(request):
    session = loading.live_stage(request)
    name = request.matchdict["name"]
    normalized = canonicalize_name(name)
    if normalized != session.normalized_name:
        raise NotFound("No such project", f"This stage holds only {session.name}.", source="url")
    canonical_redirect(request, name, normalized, token=session.token)
    entries = _staged_entries(request, session)
    if (project := loading.project(request, session)) is not None:
        entries += request.find_service(IPublishedFiles).entries(request, project)
    return _private(project_page(request, session.name, normalized, sorted(entries, key=lambda e: e.filename)))


@upload2_view(route_name="upload2.stage.file", request_method="GET")
def stage_file(request):
    session = loading.live_stage(request)
    filename = request.matchdict["filename"]
    metadata = filename.endswith(".metadata")
    file_id = request.matchdict["file_id"]
    match = [f for f in live_files(session)
             if str(f.id) == file_id and f.filename == filename.removesuffix(".metadata")
             and f.status == FileStatus.COMPLETED and (core_metadata_sha256(f) or not metadata)]
    if not match:
        raise NotFound("No such file", "This stage has no such file.", source="url")
    f = match[0]
    response = file_response(request, f.metadata_key if metadata else f.blob_key, f.filename, metadata=metadata,
                             last_modified=f.received_at)
    _check_range(request, response)
    return _private(response)


def _check_range(request, response) -> None:
    """A Range outside the file is a problem, as every error under the root is; WebOb would
    answer its own text/plain 416. The test is WebOb's own (``conditional_response_app``)."""
    if (request.range and response.status_int == 200 and response in request.if_range
            and request.range.content_range(response.content_length) is None):
        response.app_iter.close()  # the file it opened is not sent
        raise RangeNotSatisfiable("Range not satisfiable", f"The file is {response.content_length} bytes.",
                                  source="Range", headers={"Content-Range": f"bytes */{response.content_length}"})
