"""``vnd-upload2-resumable-v1``: the file is appended in chunks to an upload resource that
follows draft-ietf-httpbis-resumable-upload (the ``file_url`` of the mechanism map).

The resource exists as soon as the file upload session does (``HEAD`` answers
``Upload-Offset: 0``). ``PATCH`` appends at ``Upload-Offset``; the append that carries
``Upload-Complete: ?1`` ends the upload, and the client then completes the file upload
session as usual: the server answers 202 and a task hashes and checks the assembled file.
The offset lives in the database and the bytes under the file's storage key, so any process
can take the next append; a row lock makes appends to one upload exclusive.
"""

from __future__ import annotations

import os
import re

import sqlalchemy as sa
from pyramid.response import Response
from pyramid.view import view_config

from .. import states
from ..db import utcnow
from ..interfaces import IFileStorage
from ..models import FileUploadSession
from ..problems import BadRequest, Conflict, ContentTooLarge, MethodNotAllowed, NotFound, UnsupportedMediaType
from ..services import files
from ..services.cleanup import purge_after_commit
from ..services.digests import ResumableDigests
from ..services.streaming import CHUNK
from ..states import FileStatus, PublishingStatus
from ..views.context import addressed_file, file_session_context, publishing_session_context, with_session
from ..views.errors import problem_response
from ..views.upload2 import file_url

IDENTIFIER = "vnd-upload2-resumable-v1"
ROUTE = "upload2.file.resumable"
PARTIAL_UPLOAD = "application/partial-upload"
ALLOW = "HEAD, PATCH, DELETE, OPTIONS"
PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for FOR UPDATE NOWAIT on a held row


class MismatchingOffset(Conflict):
    type = PROBLEM_TYPES + "mismatching-upload-offset"


class InconsistentLength(BadRequest):
    type = PROBLEM_TYPES + "inconsistent-upload-length"


class CompletedUpload(BadRequest):
    type = PROBLEM_TYPES + "completed-upload"


def describe(request, file_session) -> dict:
    return {"identifier": IDENTIFIER, "file_url": file_url(request, file_session, ROUTE)}


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
    """The addressed upload; authorization is checked on every request, as the PEP asks of
    mechanisms that span several. ``lock="append"`` takes the row or fails at once with 409
    (two appends never interleave); ``lock="read"`` waits for an append in flight, so an
    offset is never outdated."""
    session = publishing_session_context(request)
    query = sa.select(FileUploadSession).where(addressed_file(request, session),
                                               FileUploadSession.mechanism == IDENTIFIER)
    if lock == "append":
        query = query.with_for_update(nowait=True)
    elif lock == "read":
        query = query.with_for_update(read=True)
    try:
        upload = request.db.scalar(query)
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise Conflict("Append in progress", "Another request is appending to this upload; once it ends, "
                       "resume from the offset HEAD reports.", source="Upload-Offset")
    # A failed or canceled upload's bytes are purged: its resource is gone with them.
    if (upload is None or session.status == PublishingStatus.CANCELED
            or upload.status in (FileStatus.ERROR, FileStatus.CANCELED)):
        raise NotFound("No such upload", "There is no resumable upload at this URL.", source="url")
    with_session(upload, session)
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
    return {"Upload-Limit": f"max-size={upload.size}, max-append-size={max_append_size}, max-age={max_age}"}


@view_config(route_name=ROUTE, request_method="HEAD")
def offset(request):
    upload = _upload(request, lock="read")
    response = Response(status=204, content_type=None)
    response.headers.update(_state(request, upload))
    return response


@view_config(route_name=ROUTE, request_method="OPTIONS")
def options(request):
    upload = _upload(request)
    response = Response(status=204, content_type=None)
    response.headers.update({"Allow": ALLOW, "Accept-Patch": PARTIAL_UPLOAD, **_limit(request, upload)})
    return response


@view_config(route_name=ROUTE, request_method="PATCH")
def append(request):
    upload = _upload(request, lock="append")
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
    path = request.find_service(IFileStorage).path(upload.blob_key)
    body = _Body(request)
    # Hashed as written, so that verification reads nothing back (services/digests.py).
    digests = ResumableDigests.start(upload.hashes) if current == 0 else ResumableDigests.resume(upload.digest_state)
    written, overflow = _write(path, current, body, min(remaining, settings.max_append_size), digests)
    if overflow:
        return _overflow(request, upload, remaining)
    # What arrived is kept even when the client went away mid-append: it resumes from here.
    upload.received_size = current + written
    upload.digest_state = digests.state() if digests else None
    response = Response(status=204, content_type=None)
    if complete and not body.interrupted:
        if upload.received_size != upload.size:
            problem = InconsistentLength("Inconsistent length", f"The upload ended at {upload.received_size} "
                                         f"bytes; the file was declared as {upload.size}.", source="Upload-Complete")
            response = problem_response(problem)  # the bytes that arrived are kept
        else:
            upload.received_at = utcnow()
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
    states.file_upload(upload, "fail")
    upload.notices = [*upload.notices, problem.detail]
    purge_after_commit(request, [upload.blob_key, upload.metadata_key])
    return problem_response(problem)  # returned, not raised: the failure is committed


class _Body:
    """The request body straight from the server's ``wsgi.input``, so that a body ending
    before its Content-Length (the client went away) still yields every byte that arrived;
    webob's reader drops the last read then."""

    def __init__(self, request):
        self.input = request.body_file_raw
        self.remaining = request.content_length
        if self.remaining is None and not request.environ.get("wsgi.input_terminated"):
            self.remaining = 0  # no length and no end marker: an empty body, as webob reads it
        self.interrupted = False

    def read(self, size: int) -> bytes:
        if self.remaining == 0:
            return b""
        try:
            chunk = self.input.read(size if self.remaining is None else min(size, self.remaining))
        except OSError:
            chunk = b""
        if self.remaining is not None:
            self.remaining -= len(chunk)
            self.interrupted = not chunk
        return chunk


def _write(path: str, offset: int, body: _Body, limit: int, digests: ResumableDigests | None) -> tuple[int, bool]:
    """Write ``body`` into the file at ``path`` from ``offset``, one chunk in memory at a
    time, feeding ``digests`` what is written; return (bytes written, whether more than
    ``limit`` bytes came: none past it are)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    written, overflow = 0, False
    hashers = list(digests.hashers.values()) if digests else []
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644), "wb") as fh:
        # Bytes past the offset were never acknowledged (their append did not commit).
        fh.truncate(offset)
        fh.seek(offset)
        while chunk := body.read(CHUNK):
            if written + len(chunk) > limit:
                overflow = True
                break
            fh.write(chunk)
            # Hashed here, not on a second thread: rehashes holds the GIL while it hashes.
            for hasher in hashers:
                hasher.update(chunk)
            _start_writeback(fh, offset + written, len(chunk))
            written += len(chunk)
        # The offset is acknowledged only once the bytes are on disk.
        fh.flush()
        os.fsync(fh.fileno())
    return written, overflow


def _start_writeback(fh, start: int, length: int) -> None:
    """Have the kernel start writing ``length`` bytes at ``start`` out now (Linux does on
    DONTNEED), so the fsync that must precede the offset's commit waits for the last chunk,
    not the whole append (benchmarks/resumable.py: 0.4 ms instead of 3.2 ms per 8 MiB append)."""
    if hasattr(os, "posix_fadvise"):
        fh.flush()
        os.posix_fadvise(fh.fileno(), start, length, os.POSIX_FADV_DONTNEED)


@view_config(route_name=ROUTE, request_method="DELETE")
def cancel(request):
    """The draft's upload cancellation is the PEP's file upload session cancellation."""
    upload = file_session_context(request, edit=True, lock_session=True)
    if upload.mechanism != IDENTIFIER:
        raise NotFound("No such upload", "There is no resumable upload at this URL.", source="url")
    files.delete(request, upload)
    return Response(status=204, content_type=None)


@view_config(route_name=ROUTE)
def method_not_allowed(request):
    raise MethodNotAllowed("Method not allowed", f"{request.method} is not allowed here; use {ALLOW}.",
                           source="method", headers={"Allow": ALLOW})


def includeme(config):
    root = config.registry["upload2.settings"].root_path
    config.add_route(ROUTE, root + "sessions/{token}/files/{file_id}/resumable")
    config.add_upload_mechanism(IDENTIFIER, describe)
    config.scan(__name__)
