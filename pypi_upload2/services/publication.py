"""Publication: a session's completed files become public at once, or not at all.

Synchronously within the publish request, or (``upload2.publish_mode = deferred``) in
three task steps: reserve the filenames, run the publish checks, conclude.
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa

from .. import states
from ..db import utcnow
from ..interfaces import ITaskQueue
from ..models import FileUploadSession, PublishingSession, Release, ReleaseFile
from ..problems import BadRequest, Conflict, UnprocessableContent
from ..states import FileStatus, PublishingStatus
from . import checks
from .publishing import live_files


def new_files_window_closed(request, release: Release | None) -> str | None:
    """Why no file may join ``release`` now, or None: files join a published release only
    within ``new_files_window`` seconds of its first publication (0 disables the rule)."""
    window = request.registry["upload2.settings"].new_files_window
    if not window or release is None or release.published_at is None:
        return None
    if utcnow() <= release.published_at + datetime.timedelta(seconds=window):
        return None
    return (f"Version {release.version} was first published at {release.published_at:%Y-%m-%d %H:%M:%S} UTC; "
            f"new files can be added only within {window} seconds of that.")


def check_new_files_window(request, release: Release | None, source: str = "filename") -> None:
    """Refuse (400) a file joining ``release`` after its new-files window: every upload door
    asks when a file arrives, and every publish asks again (a session may outlive the window)."""
    if (reason := new_files_window_closed(request, release)) is not None:
        raise BadRequest("New files window closed", reason, source=source)


def publish(request, session: PublishingSession) -> bool:
    """Publish every completed file atomically (False), or accept the publish for a task when
    ``upload2.publish_mode`` is deferred (True). A synchronous failure raises (409 for a
    conflict, 422 for a failed publish check) and changes nothing."""
    db = request.db
    states.publishing(session, "publish", dry_run=True)
    files = live_files(session)
    if files:  # publishing no file adds none: only ends the session
        check_new_files_window(request, session.release, source="session")
    unfinished = [f for f in files if f.status != FileStatus.COMPLETED]
    if unfinished:
        raise Conflict(
            "Files are not completed",
            "Every file must be completed before the session can be published.",
            errors=[{"source": f.filename, "message": f"status is {f.status}"} for f in unfinished],
        )
    if request.registry["upload2.settings"].publish_mode == "deferred":
        _defer(request, session, files)
        return True
    errors = checks.run(request, session, files)
    if errors:
        raise UnprocessableContent("Publish checks failed", "Some files may not be published.", errors=errors)
    now = utcnow()
    rows = [_release_file(session, f, now) for f in files]
    try:
        # The database's unique filename (and one-sdist) constraints make this atomic
        # against concurrent publishes and legacy uploads of the same filenames.
        with db.begin_nested():
            db.add_all(rows)
            db.flush()
    except sa.exc.IntegrityError:
        raise _conflict(db, session.release, files)
    _published(session, now, "publish")
    return False


def _release_file(session: PublishingSession, f: FileUploadSession, published_at) -> ReleaseFile:
    # published_at None: the filename is only reserved, by a deferred publish in progress.
    return ReleaseFile(release_id=session.release_id, filename=f.filename, packagetype=f.packagetype,
                       size=f.received_size, sha256=f.sha256, requires_python=f.requires_python,
                       blob_key=f.blob_key, metadata_sha256=f.metadata_sha256,
                       uploaded_at=f.received_at, published_at=published_at, publishing_session_id=session.id)


def _published(session: PublishingSession, now, event: str) -> None:
    release = session.release
    release.published = True
    release.published_at = release.published_at or now
    if session.project.registered_at is None:
        session.project.registered_at = now
    states.publishing(session, event)
    session.ended_at = now


def _conflict(db, release, files) -> Conflict:
    names = [f.filename for f in files]
    taken = set(db.scalars(sa.select(ReleaseFile.filename).where(ReleaseFile.filename.in_(names))))
    errors = [{"source": n, "message": "a file with this name already exists"} for n in names if n in taken]
    if not errors:
        errors = [{"source": f.filename, "message": "the release already has an sdist"}
                  for f in files if f.packagetype == "sdist"]
    return Conflict("Filename conflict", "Some files conflict with files already in the release.",
                    errors=errors)


# -- deferred publish (upload2.publish_mode = deferred): the request defers, a task settles ---

# Prefixes the notices a failed publish leaves, so the next attempt can clear them.
PUBLISH_NOTICE = "Publish failed: "


def _defer(request, session: PublishingSession, files: list[FileUploadSession]) -> None:
    states.publishing(session, "defer")
    session.notices = []
    for f in files:
        f.notices = [n for n in f.notices if not n.startswith(PUBLISH_NOTICE)]
    # While processing, ended_at is when the publish was accepted: the re-send deadline counts from it.
    session.ended_at = utcnow()
    request.find_service(ITaskQueue).enqueue("publish_session", session.id)


def _processing(db, session_id: int) -> PublishingSession | None:
    """The session, locked as every edit locks it, while its deferred publish is unsettled."""
    session = db.scalar(sa.select(PublishingSession).where(PublishingSession.id == session_id).with_for_update())
    return session if session is not None and session.status == PublishingStatus.PROCESSING else None


def _reservations(db, session: PublishingSession) -> list[ReleaseFile]:
    return list(db.scalars(sa.select(ReleaseFile).where(
        ReleaseFile.publishing_session_id == session.id, ReleaseFile.published_at.is_(None))))


def reserve(request, session_id: int) -> bool:
    """First step: reserve the session's filenames in the release (rows that are not yet
    published). True when they are held, also by an earlier run of the same publish; False
    when the publish is settled already or a conflict moved the session to error."""
    db = request.db
    session = _processing(db, session_id)
    if session is None:
        return False
    files = live_files(session)
    held = {row.filename for row in _reservations(db, session)}
    missing = [f for f in files if f.filename not in held]
    try:
        with db.begin_nested():
            db.add_all([_release_file(session, f, None) for f in missing])
            db.flush()
    except sa.exc.IntegrityError:
        _fail(request, session, _conflict(db, session.release, missing).errors)
        return False
    return True


def check(request, session_id: int) -> list[dict]:
    """Second step: the publish checks' problems (outside any lock: a scan may be slow)."""
    session = request.db.get(PublishingSession, session_id)
    if session is None:
        return []
    files = live_files(session)
    # The files become public when the task concludes: the window may have closed since the request.
    if files and (closed := new_files_window_closed(request, session.release)) is not None:
        return [{"source": "session", "message": closed}]
    return checks.run(request, session, files)


def conclude(request, session_id: int, errors: list[dict]) -> None:
    """Last step: publish the reserved files at once, or release them and report ``errors``."""
    db = request.db
    session = _processing(db, session_id)
    if session is None:
        return
    if errors:
        _fail(request, session, errors)
        return
    now = utcnow()
    for row in _reservations(db, session):
        row.published_at = now
    _published(session, now, "succeed")


def _fail(request, session: PublishingSession, errors: list[dict]) -> None:
    """Release the reservations; the session goes to error, editable again, and its notices
    (and the files' own, where one is to blame) say what failed."""
    db = request.db
    for row in _reservations(db, session):
        db.delete(row)
    states.publishing(session, "fail")
    session.ended_at = None
    session.notices = [PUBLISH_NOTICE + (e["message"] if e["source"] == "session" else f"{e['source']}: {e['message']}")
                       for e in errors]
    by_name = {f.filename: f for f in live_files(session)}
    for e in errors:
        if (f := by_name.get(e["source"])) is not None:
            f.notices = [*f.notices, PUBLISH_NOTICE + e["message"]]
    db.flush()
