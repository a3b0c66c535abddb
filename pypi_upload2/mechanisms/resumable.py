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

import contextlib
import os

from ..interfaces import IFileStorage
from ..services import files
from ..services.cleanup import storage_full
from ..services.digests import ResumableDigests
from ..services.streaming import CHUNK

IDENTIFIER = "vnd-upload2-resumable-v1"
ROUTE = "upload2.file.resumable"


def describe(request, file_session) -> dict:
    return {"identifier": IDENTIFIER, "file_url": request.route_url(
        ROUTE, token=file_session.publishing_session.token, file_id=file_session.id)}


def append(request, upload, body: Body, limit: int, complete: bool) -> bool:
    """Append ``body`` at the upload's offset, at most ``limit`` bytes, and record what was
    written (kept even when the client went away mid-append: it resumes from there). False
    when more than ``limit`` bytes came: nothing of them is kept."""
    current = upload.received_size or 0
    path = request.find_service(IFileStorage).path(upload.blob_key)
    # Hashed as written, so that verification reads nothing back (services/digests.py).
    digests = ResumableDigests.start(upload.hashes) if current == 0 else ResumableDigests.resume(upload.digest_state)
    with storage_full():
        written, overflow = _write(path, current, body, limit, digests)
    if overflow:
        return False
    size = current + written
    files.record_received(upload, size, digest_state=digests.state() if digests else None,
                          whole=complete and not body.interrupted and size == upload.size)
    return True


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


def _write(path: str, offset: int, body: Body, limit: int, digests: ResumableDigests | None) -> tuple[int, bool]:
    """Write ``body`` into the file at ``path`` from ``offset``, one chunk in memory at a
    time, feeding ``digests`` what is written; return (bytes written, whether more than
    ``limit`` bytes came: none past it are)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        return _append(path, offset, body, limit, digests)
    except BaseException:
        # A failed append is not acknowledged: give back the room its bytes took (a full disk).
        with contextlib.suppress(FileNotFoundError):
            os.truncate(path, offset)
        raise


def _append(path: str, offset: int, body: Body, limit: int, digests: ResumableDigests | None) -> tuple[int, bool]:
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



def includeme(config):
    root = config.registry["upload2.settings"].root_path
    config.add_route(ROUTE, root + "sessions/{token}/files/{file_id}/resumable")
    config.add_upload_mechanism(IDENTIFIER, describe)
