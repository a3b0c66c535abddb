"""The periodic sweeps: expiry, status retention, and work stuck in ``processing``.

Each sweep claims a batch of rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
workers running it at once take different rows, and a row a request holds (a publish, an
append) is left for the next run. SQLite serializes writers instead (its write lock, taken
at the claim's row lock).
"""

from __future__ import annotations

import datetime
import logging

import sqlalchemy as sa
from sqlalchemy import orm

from .. import states
from ..db import is_postgresql, utcnow
from ..interfaces import ITaskQueue
from ..models import FileUploadSession, PublishingSession, ReleaseGroup
from ..states import FileStatus, PublishingStatus
from . import files, groups, publishing
from .cleanup import purge_after_commit

log = logging.getLogger(__name__)

BATCH = 500
# What publishes deferred work: a session's task, and a release group's for all its sessions.
PUBLISH_TASKS = ((PublishingSession, "publish_session"), (ReleaseGroup, "publish_group"))


def _claim(db, query, of):
    if is_postgresql(db):
        query = query.with_for_update(skip_locked=True, of=of)
    return list(db.scalars(query.limit(BATCH)))


def _since(seconds: int) -> datetime.datetime:
    return utcnow() - datetime.timedelta(seconds=seconds)


def expire_sessions(request) -> int:
    """Cancel open and error release groups and sessions past ``expires-at``: a group's
    sessions go with it, a session's files with it, their bytes are purged after commit and a
    name only they reserved is free again."""
    now = utcnow()
    canceled = 0
    # Groups first: their sessions go with them.
    for model, cancel, what in ((ReleaseGroup, groups.cancel, "release group"),
                                (PublishingSession, publishing.cancel, "session")):
        expired = _claim(request.db, sa.select(model).where(
            model.status.in_((PublishingStatus.OPEN, PublishingStatus.ERROR)),
            model.expires_at <= now).order_by(model.id), model)
        for row in expired:
            row.notices = [*row.notices, f"Canceled by the server: the {what} expired."]
            cancel(request, row)
        if expired:
            log.info("canceled %d expired %s(s)", len(expired), what)
        canceled += len(expired)
    return canceled


def expire_files(request) -> int:
    """Cancel pending file upload sessions past their own ``expires-at`` (a completed file
    lives as long as its publishing session)."""
    expired = _claim(request.db, sa.select(FileUploadSession).join(PublishingSession).where(
        FileUploadSession.status == FileStatus.PENDING, FileUploadSession.expires_at <= utcnow(),
        PublishingSession.status.in_((PublishingStatus.OPEN, PublishingStatus.ERROR)),
    ).order_by(FileUploadSession.id), FileUploadSession)
    for file_session in expired:
        file_session.notices = [*file_session.notices, "Canceled by the server: the upload expired."]
        files.delete(request, file_session)
    if expired:
        log.info("canceled %d expired file upload session(s)", len(expired))
    return len(expired)


def purge_ended_sessions(request) -> int:
    """Forget published and canceled sessions once ``upload2.status_retention`` has passed
    since they ended: their status URLs answer 404 from then on (the PEP's retention rule)."""
    db = request.db
    retention = request.registry["upload2.settings"].status_retention
    ended = _claim(db, sa.select(PublishingSession).where(
        PublishingSession.status.in_(states.TERMINAL_PUBLISHING),
        PublishingSession.ended_at <= _since(retention)).order_by(PublishingSession.id)
        .options(orm.selectinload(PublishingSession.files)), PublishingSession)
    # Bytes of files that were not published (purged before: this repeats an idempotent delete).
    purge_after_commit(request, [key for session in ended for f in session.files
                                 if f.status != FileStatus.COMPLETED for key in (f.blob_key, f.metadata_key)])
    if ended:
        # The database deletes their file upload sessions (ON DELETE CASCADE).
        db.execute(sa.delete(PublishingSession).where(PublishingSession.id.in_([s.id for s in ended]))
                   .execution_options(synchronize_session=False))
        log.info("forgot %d ended publishing session(s)", len(ended))
    ended_groups = _claim(db, sa.select(ReleaseGroup.id).where(
        ReleaseGroup.status.in_(states.TERMINAL_PUBLISHING),
        ReleaseGroup.ended_at <= _since(retention)).order_by(ReleaseGroup.id), ReleaseGroup)
    if ended_groups:
        # Their sessions, forgotten with them or later, leave them first (not every database enforces SET NULL).
        db.execute(sa.update(PublishingSession).where(PublishingSession.group_id.in_(ended_groups))
                   .values(group_id=None).execution_options(synchronize_session=False))
        db.execute(sa.delete(ReleaseGroup).where(ReleaseGroup.id.in_(ended_groups))
                   .execution_options(synchronize_session=False))
        log.info("forgot %d ended release group(s)", len(ended_groups))
    return len(ended) + len(ended_groups)


def resend_processing(request) -> int:
    """Hand files and publishes that stayed ``processing`` past ``upload2.processing_deadline``
    to a worker again (their message was lost, or their worker died): the tasks are
    idempotent, so a duplicate finds the work done."""
    db = request.db
    queue = request.find_service(ITaskQueue)
    cutoff = _since(request.registry["upload2.settings"].processing_deadline)
    now = utcnow()
    stuck_files = _claim(db, sa.select(FileUploadSession).where(
        FileUploadSession.status == FileStatus.PROCESSING, FileUploadSession.processing_since <= cutoff,
    ).order_by(FileUploadSession.id), FileUploadSession)
    for file_session in stuck_files:
        file_session.processing_since = now  # the next deadline counts from this re-send
        queue.enqueue("verify_file", file_session.id)
    stuck_sessions = []
    for model, task in PUBLISH_TASKS:
        stuck = _claim(db, sa.select(model).where(
            model.status == PublishingStatus.PROCESSING, model.processing_since <= cutoff,
            model.publish_after.is_(None),  # a scheduled one is publish_due's
        ).order_by(model.id), model)
        for row in stuck:
            row.processing_since = now
            queue.enqueue(task, row.id)
        stuck_sessions += stuck
    if stuck_files or stuck_sessions:
        log.warning("re-sent %d verification(s) and %d publish(es) processing for over %d s",
                    len(stuck_files), len(stuck_sessions), request.registry["upload2.settings"].processing_deadline)
    return len(stuck_files) + len(stuck_sessions)


def publish_due(request) -> int:
    """Hand the scheduled publishes whose time has come to a worker (services/schedule.py):
    from then on they are deferred publishes, re-sent like any other if their message is lost."""
    now = utcnow()
    queue = request.find_service(ITaskQueue)
    due = []
    for model, task in PUBLISH_TASKS:
        rows = _claim(request.db, sa.select(model).where(
            model.status == PublishingStatus.PROCESSING, model.publish_after <= now).order_by(model.id), model)
        for row in rows:
            row.publish_after, row.processing_since = None, now
            queue.enqueue(task, row.id)
        due += rows
    if due:
        log.info("sent %d scheduled publish(es)", len(due))
    return len(due)
