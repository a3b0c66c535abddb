"""``vnd-upload2-resumable-v1``: the file is appended in chunks to an upload resource that
follows draft-ietf-httpbis-resumable-upload (the ``file_url`` of the mechanism map).

The resource exists as soon as the file upload session does (``HEAD`` answers
``Upload-Offset: 0``). ``PATCH`` appends at ``Upload-Offset``; the append that carries
``Upload-Complete: ?1`` ends the upload, and the client then completes the file upload
session as usual: the server answers 202 and a task hashes and checks the assembled file.
The offset lives in the database and the bytes in parts appended to the file's storage key
(in place on disk, the parts of a multipart upload in an object store), so any process
can take the next append; a row lock makes appends to one upload exclusive.
"""

from __future__ import annotations

from ..interfaces import IFileStorage
from . import attestations_url
from ..services import files
from ..services.cleanup import storage_full
from ..services.digests import ResumableDigests
from ..services.streaming import CHUNK

IDENTIFIER = "vnd-upload2-resumable-v1"
ROUTE = "upload2.file.resumable"


def describe(request, file_session) -> dict:
    return {"identifier": IDENTIFIER, "file_url": request.route_url(
        ROUTE, token=file_session.publishing_session.token, file_id=file_session.id),
        **attestations_url(request, file_session)}


OVERFLOW = "overflow"
TOO_SMALL = "too-small"


class _Dropped(Exception):
    """Leaves the storage's appender with an error: nothing of the append is kept."""


def append(request, upload, body: Body, limit: int, complete: bool) -> str | None:
    """Append ``body`` at the upload's offset, at most ``limit`` bytes, and record what was
    written (kept even when the client went away mid-append: it resumes from there). None
    when it was; else why nothing of it is kept: ``OVERFLOW``, more than ``limit`` bytes came;
    ``TOO_SMALL``, fewer than the storage's smallest part, and the file does not end there."""
    storage = request.find_service(IFileStorage)
    current = upload.received_size or 0
    # Hashed as written, so that verification reads nothing back (services/digests.py).
    digests = ResumableDigests.start(upload.hashes) if current == 0 else ResumableDigests.resume(upload.digest_state)
    try:
        with storage_full(), storage.appender(upload.blob_key, current) as fh:
            written = _write(fh, body, limit, digests)
            # An object store assembles parts of a minimum size only, all but the last.
            if 0 < written < storage.min_part_size and current + written != upload.size:
                raise _Dropped(TOO_SMALL)
    except _Dropped as dropped:
        return dropped.args[0]
    size = current + written
    files.record_received(upload, size, digest_state=digests.state() if digests else None,
                          whole=complete and not body.interrupted and size == upload.size)
    return None


class Body:
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


def _write(fh, body: Body, limit: int, digests: ResumableDigests | None) -> int:
    """Write ``body`` to ``fh``, one chunk in memory at a time, feeding ``digests`` what is
    written; return the bytes written. Raises _Dropped past ``limit`` bytes."""
    written = 0
    hashers = list(digests.hashers.values()) if digests else []
    while chunk := body.read(CHUNK):
        if written + len(chunk) > limit:
            raise _Dropped(OVERFLOW)
        fh.write(chunk)
        # Hashed here, not on a second thread: rehashes holds the GIL while it hashes.
        for hasher in hashers:
            hasher.update(chunk)
        written += len(chunk)
    return written


def includeme(config):
    root = config.registry["upload2.settings"].root_path
    config.add_route(ROUTE, root + "sessions/{token}/files/{file_id}/resumable")
    config.add_upload_mechanism(IDENTIFIER, describe)
