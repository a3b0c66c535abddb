"""The HTTP side of ``vnd-upload2-resumable-v1`` (mechanisms/resumable.py): the draft's
upload resource, its fields and problems; the mechanism below stores and records the bytes."""

from __future__ import annotations

import re

from pyramid.response import Response
from .registration import upload2_view

from .. import states
from ..db import utcnow
from ..interfaces import IFileStorage
from ..mechanisms import resumable
from ..mechanisms.resumable import IDENTIFIER, ROUTE, Body
from ..models import FileUploadSession
from ..problems import BadRequest, Conflict, ContentTooLarge, MethodNotAllowed, NotFound, UnsupportedMediaType
from ..services import files, loading
from ..states import FileStatus
from .errors import problem_response
from .requests import check_content_length

PARTIAL_UPLOAD = "application/partial-upload"
ALLOW = "HEAD, PATCH, DELETE, OPTIONS"
PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"


class MismatchingOffset(Conflict):
    type = PROBLEM_TYPES + "mismatching-upload-offset"


class InconsistentLength(BadRequest):
    type = PROBLEM_TYPES + "inconsistent-upload-length"


class CompletedUpload(BadRequest):
    type = PROBLEM_TYPES + "completed-upload"


class ContentTooSmall(BadRequest):
    """A non-final append below ``min-append-size``: the draft names no problem type for it."""


# -- structured fields (RFC 9651): an invalid value means the field is absent --------------

def _item(value: str | None) -> str | None:
    return None if value is None else value.split(";", 1)[0].strip()


def _sf_integer(value: str | None) -> int | None:
    value = _item(value)
    return int(value) if value is not None and re.fullmatch(r"[0-9]{1,15}", value) else None


def _sf_boolean(value: str | None) -> bool | None:
    return {"?1": True, "?0": False}.get(_item(value))


def _required(request, name: str, parse):
    value = parse(request.headers.get(name))
    if value is None:
        raise BadRequest(f"Missing {name}", f"Send a valid {name} header with every append.", source=name)
    return value


# -- the upload resource -----------------------------------------------------------------------

def _upload(request, *, lock: str | None = None) -> FileUploadSession:
    """The addressed upload, authorized on every request as the PEP asks of mechanisms that
    span several. ``lock="nowait"``: two appends never interleave; ``lock="read"``: an
    offset is never outdated by an append in flight."""
    return _live(loading.file_session(request, lock=lock, mechanism=IDENTIFIER))


def _live(upload: FileUploadSession) -> FileUploadSession:
    # A failed or canceled upload's bytes are purged: its resource is gone with them.
    if upload.status in (FileStatus.ERROR, FileStatus.CANCELED):
        raise NotFound("No such upload", "There is no resumable upload at this URL.", source="url")
    return upload


def _state(request, upload: FileUploadSession) -> dict[str, str]:
    """The upload's state as the draft's response fields."""
    return {
        "Upload-Offset": str(upload.received_size or 0),
        "Upload-Complete": "?1" if upload.received_at is not None else "?0",
        "Upload-Length": str(upload.size),
        **_limit(request, upload),
        "Cache-Control": "no-store",
    }


def _limit(request, upload: FileUploadSession) -> dict[str, str]:
    max_append_size = request.registry["upload2.settings"].max_append_size
    max_age = max(0, int((upload.expires_at - utcnow()).total_seconds()))
    limits = f"max-size={upload.size}"
    if min_append_size := request.find_service(IFileStorage).min_part_size:
        # The object store's smallest part; the append that ends the upload may be smaller.
        limits += f", min-append-size={min_append_size}"
    return {"Upload-Limit": f"{limits}, max-append-size={max_append_size}, max-age={max_age}"}


def _too_small(request, upload: FileUploadSession) -> ContentTooSmall:
    minimum = request.find_service(IFileStorage).min_part_size
    return ContentTooSmall("Append too small", f"An append that does not end the upload carries at least "
                           f"{minimum} bytes (min-append-size); only the last one may be smaller.",
                           source="Content-Length", headers=_limit(request, upload))


@upload2_view(route_name=ROUTE, request_method="HEAD")
def offset(request):
    upload = _upload(request, lock="read")
    response = Response(status=204, content_type=None)
    response.headers.update(_state(request, upload))
    return response


@upload2_view(route_name=ROUTE, request_method="OPTIONS")
def options(request):
    upload = _upload(request)
    response = Response(status=204, content_type=None)
    response.headers.update({"Allow": ALLOW, "Accept-Patch": PARTIAL_UPLOAD, **_limit(request, upload)})
    return response


@upload2_view(route_name=ROUTE, request_method="PATCH")
def append(request):
    check_content_length(request)
    upload = _upload(request, lock="nowait")
    settings = request.registry["upload2.settings"]
    current = upload.received_size or 0
    provided = _required(request, "Upload-Offset", _sf_integer)
    complete = _required(request, "Upload-Complete", _sf_boolean)
    if request.content_type != PARTIAL_UPLOAD:
        raise UnsupportedMediaType("Unsupported Content-Type", f"Append with {PARTIAL_UPLOAD}.", source="Content-Type")
    length = _sf_integer(request.headers.get("Upload-Length"))
    if length is not None and length != upload.size:
        raise InconsistentLength("Inconsistent length", f"Upload-Length is {length}; the file was declared as "
                                 f"{upload.size} bytes.", source="Upload-Length")
    if upload.received_at is not None:
        if request.content_length:
            raise InconsistentLength("Upload is complete", "The upload is complete: no bytes can follow its end.",
                                     source="Upload-Complete")
        raise CompletedUpload("Upload is complete", "The upload is complete already.", source="Upload-Complete")
    states.publishing(upload.publishing_session, "edit", dry_run=True)
    states.file_upload(upload, "transfer")
    if provided != current:
        raise MismatchingOffset("Mismatching offset", f"The upload's offset is {current}, not {provided}; "
                                "resume from the offset HEAD reports.", source="Upload-Offset",
                                headers={"Upload-Offset": str(current)},
                                **{"expected-offset": current, "provided-offset": provided})
    remaining = upload.size - current
    announced = request.content_length
    if announced is not None:
        if announced > settings.max_append_size:
            raise ContentTooLarge("Append too large", f"An append carries at most {settings.max_append_size} bytes.",
                                  source="Content-Length", headers=_limit(request, upload))
        if announced > remaining:
            raise ContentTooLarge("Beyond the declared size", f"Only {remaining} more bytes of the declared "
                                  f"{upload.size} can follow offset {current}.", source="Content-Length",
                                  headers=_limit(request, upload))
        if complete and announced != remaining:
            raise InconsistentLength("Inconsistent length", f"An append ending the upload at {current} must "
                                     f"carry the remaining {remaining} bytes.", source="Content-Length")
        if 0 < announced < request.find_service(IFileStorage).min_part_size and announced != remaining:
            raise _too_small(request, upload)
    body = Body(request)
    refused = resumable.append(request, upload, body, min(remaining, settings.max_append_size), complete)
    if refused == resumable.OVERFLOW:
        return _overflow(request, upload, remaining)
    if refused == resumable.TOO_SMALL:
        raise _too_small(request, upload)
    response = Response(status=204, content_type=None)
    if complete and not body.interrupted:
        if upload.received_size != upload.size:
            problem = InconsistentLength("Inconsistent length", f"The upload ended at {upload.received_size} "
                                         f"bytes; the file was declared as {upload.size}.", source="Upload-Complete")
            response = problem_response(problem)  # the bytes that arrived are kept
    response.headers.update({"Upload-Offset": str(upload.received_size),
                             "Upload-Complete": "?1" if upload.received_at is not None else "?0"})
    return response


def _overflow(request, upload, remaining: int):
    """A body without Content-Length ran past a limit: nothing of it is kept. Past the
    declared size the upload can never be right, so it fails as the draft requires."""
    if request.registry["upload2.settings"].max_append_size < remaining:
        raise ContentTooLarge("Append too large", "The append carried more bytes than max-append-size.",
                              source="body", headers=_limit(request, upload))
    problem = ContentTooLarge("Beyond the declared size", f"The file was declared as {upload.size} bytes; "
                              "more were sent, and the upload has failed.", source="body", headers=_limit(request, upload))
    files.fail(request, upload, problem.detail)
    return problem_response(problem)  # rendered, not raised: the failure is kept


@upload2_view(route_name=ROUTE, request_method="DELETE")
def cancel(request):
    """The draft's upload cancellation is the PEP's file upload session cancellation."""
    upload = _live(loading.file_session(request, lock="update", lock_session=True, mechanism=IDENTIFIER))
    files.delete(request, upload)
    return Response(status=204, content_type=None)


@upload2_view(route_name=ROUTE)
def method_not_allowed(request):
    raise MethodNotAllowed("Method not allowed", f"{request.method} is not allowed here; use {ALLOW}.",
                           source="method", headers={"Allow": ALLOW})


