"""``http-post-bytes``: the file's bytes are the body of one POST to ``file_url``
(views/mechanisms.py), streamed to storage and hashed while written."""

from __future__ import annotations

import secrets

from ..interfaces import IFileStorage
from . import attestations_url
from ..problems import BadRequest, ContentTooLarge, RequestTimeout
from ..services import files, loading
from ..services.cleanup import purge_on_abort, storage_full
from ..services.streaming import Interrupted, TooLarge, copy_hashing
from ..states import file_upload

IDENTIFIER = "http-post-bytes"
ROUTE = "upload2.file.bytes"


def describe(request, file_session) -> dict:
    return {"identifier": IDENTIFIER, "file_url": request.route_url(
        ROUTE, token=file_session.publishing_session.token, file_id=file_session.id),
        **attestations_url(request, file_session)}


def body_before_lock(request) -> bool:
    """Whether the body is received before the file is locked: where the storage moves in place."""
    return getattr(request.find_service(IFileStorage), "moves_in_place", False)


def receive(request, file_session, body, content_length: int | None) -> None:
    """Store ``body`` as the whole file, replacing what an earlier POST stored. ``file_session``
    is locked (the file's row), or, where the storage moves in place, read: the body is then
    received under a key of its own first, and the row locked to move it into place (on
    SQLite the lock is the database's write lock: other writers go on while the body arrives)."""
    storage, early = request.find_service(IFileStorage), body_before_lock(request)
    file_upload(file_session, "transfer", dry_run=early)
    key = file_session.blob_key
    if early:
        key = f"{key}.partial-{secrets.token_hex(8)}"
        purge_on_abort(request, [key])  # gone unless moved into place
    size, digests, members = _store(request, storage, file_session, body, content_length, key)
    if early:
        file_session = loading.locked_file(request, file_session)
        file_upload(file_session, "transfer")
        storage.move(key, file_session.blob_key)
    # Stored over what an earlier POST stored: an abort now leaves the file with no bytes.
    purge_on_abort(request, [file_session.blob_key])
    files.record_received(file_session, size, hashes=digests, whole=True, members=members)


def _store(request, storage, file_session, body, content_length: int | None, key: str):
    declared = file_session.size
    too_large = ContentTooLarge("Too many bytes", f"The file was declared as {declared} bytes.", source="body")
    if content_length is not None and content_length > declared:
        raise too_large
    scan = files.member_scan(request, file_session.filename)
    try:
        with storage_full(), storage.writer(key) as fh:
            size, digests = copy_hashing(body, fh, file_session.hashes, declared, scan)
    except TooLarge:
        raise too_large
    except Interrupted as exc:  # nothing of it is kept: the client sends the file again
        raise (RequestTimeout("Body timed out", "No bytes of the body arrived for too long.", source="body")
               if exc.timed_out else BadRequest("Incomplete body", "The body ended before its end.", source="body"))
    return size, digests, scan.hexdigest()


def includeme(config):
    config.add_upload_mechanism(IDENTIFIER, describe)
