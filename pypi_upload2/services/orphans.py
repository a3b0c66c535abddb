"""The periodic sweep of stored parts nobody owns any more: multipart uploads whose request
died before it could abort them (a killed worker, a lost connection to the store) or whose
file upload session ended without its purge reaching the store."""

from __future__ import annotations

import datetime
import logging
import re

import sqlalchemy as sa

from ..db import utcnow
from ..interfaces import IFileStorage
from ..models import FileUploadSession
from ..states import FileStatus

log = logging.getLogger(__name__)

_SESSION_KEY = re.compile(r"sessions/(\d+)/(\d+)")


def _owned(db, key: str) -> bool:
    """True when a file upload session still receiving or checking its bytes owns ``key``."""
    match = _SESSION_KEY.fullmatch(key)
    if match is None:
        return False  # a legacy upload's key lives as long as its one request
    session_id, file_id = map(int, match.groups())
    return db.scalar(sa.select(sa.func.count()).select_from(FileUploadSession).where(
        FileUploadSession.id == file_id, FileUploadSession.publishing_session_id == session_id,
        FileUploadSession.status.in_((FileStatus.PENDING, FileStatus.PROCESSING)))) > 0


def abort_orphan_uploads(request, older_than: int | None = None) -> int:
    """Discard the unassembled parts begun more than ``older_than`` seconds ago
    (``upload2.orphan_upload_age``) under keys no live file upload session owns."""
    if older_than is None:
        older_than = request.registry["upload2.settings"].orphan_upload_age
    storage = request.find_service(IFileStorage)
    orphans = [key for key in storage.unfinished(utcnow() - datetime.timedelta(seconds=older_than))
               if not _owned(request.db, key)]
    for key in orphans:
        # Only the parts: a failed write's upload may sit beside the file a retry then stored.
        storage.discard_parts(key)
    if orphans:
        log.info("aborted %d unfinished upload(s) nobody owns", len(orphans))
    return len(orphans)
