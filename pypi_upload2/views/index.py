"""Simple repository pages (PEP 503 HTML, PEP 691 JSON with PEP 700, PEP 658/714 and PEP 740's
provenance), shared by the public index and the stage preview."""

from __future__ import annotations

import dataclasses
import datetime
import html
import json
import urllib.parse
import os

from pyramid.httpexceptions import HTTPFound, HTTPMovedPermanently, HTTPNotFound
from packaging.version import Version
from pyramid.response import FileIter, Response

from ..interfaces import IFileStorage
from ..services.streaming import CHUNK

from ..services.distributions import FILENAME_CHARS

JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"
# 1.3: files may name their PEP 740 provenance object.
API_VERSION = "1.3"
PROVENANCE = "application/vnd.pypi.integrity.v1+json"


@dataclasses.dataclass(frozen=True)
class Entry:
    filename: str
    url: str
    version: str
    size: int
    sha256: str
    requires_python: str | None
    metadata_sha256: str | None
    upload_time: datetime.datetime | None
    # The URL of the file's PEP 740 provenance object (None: it has no attestations).
    provenance: str | None = None


def core_metadata_sha256(f) -> str | None:
    """PEP 658 metadata is offered for wheels only: an sdist's PKG-INFO may leave its
    dependencies undeclared (before PEP 643), yet installers would trust it."""
    return f.metadata_sha256 if f.packagetype == "bdist_wheel" else None


def _negotiate(request) -> str:
    # Offers of equal quality go to the first: plain text/html for browsers and */*.
    offers = request.accept.acceptable_offers(["text/html", HTML, JSON])
    return offers[0][0] if offers else "text/html"


def canonical_redirect(request, name: str, normalized: str, **kw):
    if name != normalized:
        raise HTTPMovedPermanently(location=request.current_route_url(name=normalized, **kw))


def _response(request, content_type: str, body: str) -> Response:
    response = Response(body, content_type=content_type, charset="utf-8")
    response.vary = ("Accept",)
    return response


def index_page(request, names: list[tuple[str, str]], project_url) -> Response:
    """``names`` is a list of (display name, normalized name)."""
    kind = _negotiate(request)
    if kind == JSON:
        body = json.dumps({"meta": {"api-version": API_VERSION},
                           "projects": [{"name": display} for display, _ in names]})
        return _response(request, JSON, body)
    links = "\n".join(f'<a href="{html.escape(project_url(n))}">{html.escape(d)}</a><br>' for d, n in names)
    return _response(request, kind, _html("Simple index", links))


def project_page(request, display_name: str, normalized: str, entries: list[Entry]) -> Response:
    kind = _negotiate(request)
    if kind == JSON:
        body = {
            "meta": {"api-version": API_VERSION},
            "name": normalized,
            "versions": sorted({e.version for e in entries}, key=Version),
            "files": [_file_json(e) for e in entries],
        }
        return _response(request, JSON, json.dumps(body))
    links = "\n".join(_file_link(e) for e in entries)
    return _response(request, kind, _html(f"Links for {display_name}", links))


def _file_json(e: Entry) -> dict:
    data = {"filename": e.filename, "url": e.url, "hashes": {"sha256": e.sha256}, "size": e.size}
    if e.requires_python:
        data["requires-python"] = e.requires_python
    if e.metadata_sha256:
        data["core-metadata"] = data["dist-info-metadata"] = {"sha256": e.metadata_sha256}
    if e.upload_time:
        data["upload-time"] = e.upload_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data["provenance"] = e.provenance
    return data


def _file_link(e: Entry) -> str:
    attrs = f' href="{html.escape(e.url)}#sha256={e.sha256}"'
    if e.requires_python:
        attrs += f' data-requires-python="{html.escape(e.requires_python)}"'
    if e.metadata_sha256:
        value = f"sha256={e.metadata_sha256}"
        attrs += f' data-dist-info-metadata="{value}" data-core-metadata="{value}"'
    if e.provenance:
        attrs += f' data-provenance="{html.escape(e.provenance)}"'
    return f"<a{attrs}>{html.escape(e.filename)}</a><br>"


def _html(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f'<meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
        f"{body}\n</body>\n</html>\n"
    )


def provenance_response(provenance: dict) -> Response:
    """A file's PEP 740 provenance object, as PyPI's integrity API serves it."""
    response = Response(json.dumps(provenance), content_type=PROVENANCE, charset="utf-8")
    response.vary = ("Accept",)
    return response


def content_disposition(filename: str) -> str:
    # Upload filenames are plain ASCII (distributions.parse_filename); any other, stored before
    # that check, is percent-encoded (RFC 6266) rather than written into the header as is.
    if FILENAME_CHARS.fullmatch(filename):
        return f'attachment; filename="{filename}"'
    return "attachment; filename*=UTF-8''" + urllib.parse.quote(filename, safe="", errors="replace")


def file_response(request, key: str, filename: str, *, metadata: bool = False, last_modified=None):
    """The bytes stored under ``key``: a redirect to the storage's own URL when
    ``upload2.storage_redirect`` is on and it has one, else streamed in bounded reads, with
    ranges and conditional requests answered (pip's range requests for wheel metadata)."""
    content_type = "text/plain" if metadata else "application/octet-stream"
    storage = request.find_service(IFileStorage)
    if request.registry["upload2.settings"].storage_redirect:
        url = storage.download_url(key, filename, content_type)
        if url is not None:
            return HTTPFound(location=url)
    try:
        fh = storage.open(key)
    except FileNotFoundError:
        raise HTTPNotFound()
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    response = Response(app_iter=FileIter(fh, CHUNK), content_type=content_type, content_length=size,
                        conditional_response=True, last_modified=last_modified)
    if not metadata:
        response.content_disposition = content_disposition(filename)
    return response
