"""Publishing sessions: create, authorize, publish atomically, cancel, extend."""

from __future__ import annotations

import datetime
import hashlib
import secrets

import sqlalchemy as sa
from packaging.utils import InvalidName, canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version

from .. import states
from ..db import utcnow
from ..interfaces import IAuthorization, ITaskQueue
from ..models import FileUploadSession, Project, PublishingSession, Release, ReleaseFile, Role
from ..problems import BadRequest, Conflict, Forbidden, UnprocessableContent
from ..states import FileStatus, PublishingStatus
from . import checks
from .cleanup import purge_after_commit


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find(db, token: str) -> PublishingSession | None:
    return db.scalar(sa.select(PublishingSession).where(PublishingSession.token_digest == token_digest(token)))


def live_files(session: PublishingSession) -> list[FileUploadSession]:
    return [f for f in session.files if f.status != FileStatus.CANCELED]


def _string(value, key: str, limit: int) -> str:
    if value is None:
        raise BadRequest("Missing key", f"The request has no {key!r} key.", source=key)
    if not isinstance(value, str):
        raise BadRequest(f"Invalid {key}", f"{key!r} must be a string.", source=key)
    if len(value) > limit:  # the columns' limits: a longer value would fail the INSERT
        raise BadRequest(f"Invalid {key}", f"{key!r} is longer than {limit} characters.", source=key)
    return value


def parse_name_version(name, version) -> tuple[str, Version]:
    name = _string(name, "name", Project.__table__.c.normalized_name.type.length)
    try:
        normalized = canonicalize_name(name, validate=True)
    except InvalidName:
        raise BadRequest("Invalid name", f"{name!r} is not a valid project name.", source="name")
    version = _string(version, "version", Release.__table__.c.version.type.length)
    try:
        return normalized, Version(version)
    except InvalidVersion:
        raise BadRequest("Invalid version", f"{version!r} is not a valid version.", source="version")


def canonical_version(version: Version) -> str:
    """The release key: versions equal under PEP 440 (1.0, 1.0.0, v1.0) are one release."""
    return canonicalize_version(version)


def authorize(request, user, session: PublishingSession) -> None:
    """The PEP's per-request check: the caller may upload to the session's project now."""
    project = session.project
    if project is None:
        allowed = session.created_by_id == user.id
    else:
        allowed = request.find_service(IAuthorization).may_upload(user, project)
    if not allowed:
        raise Forbidden("Not allowed", f"You may not upload to {session.name!r}.", source="authorization")


def _insert(db, obj) -> bool:
    """Insert ``obj`` in a savepoint; False when a unique constraint refused it."""
    try:
        with db.begin_nested():
            db.add(obj)
            db.flush()
    except sa.exc.IntegrityError:
        return False
    return True


def _project(request, user, display_name: str, normalized: str) -> tuple[Project, bool]:
    """The existing project the user may upload to, or a new reservation of the name."""
    db = request.db
    authz = request.find_service(IAuthorization)
    project = db.scalar(sa.select(Project).where(Project.normalized_name == normalized))
    if project is None:
        if not authz.may_register(user, normalized):
            raise Forbidden("Not allowed", f"You may not register {display_name!r}.", source="name")
        project = Project(name=display_name, normalized_name=normalized)
        if _insert(db, project):
            db.add(Role(project_id=project.id, user_id=user.id, role_name="Owner"))
            return project, True
        # Someone reserved the name concurrently; treat it as existing.
        project = db.scalar(sa.select(Project).where(Project.normalized_name == normalized))
    if not authz.may_upload(user, project):
        raise Forbidden("Not allowed", f"You may not upload to {display_name!r}.", source="name")
    return project, False


def _release(db, project: Project, version: Version, raw_version: str) -> Release:
    canonical = canonical_version(version)
    query = sa.select(Release).where(Release.project_id == project.id, Release.canonical_version == canonical)
    release = db.scalar(query)
    if release is None:
        release = Release(project_id=project.id, version=raw_version, canonical_version=canonical)
        if not _insert(db, release):
            release = db.scalar(query)
    return release


def _live_session(db, release: Release) -> PublishingSession | None:
    return db.scalar(sa.select(PublishingSession).where(
        PublishingSession.release_id == release.id,
        PublishingSession.status.in_(states.LIVE_PUBLISHING)))


def release_for(request, user, name, version) -> tuple[Release, bool]:
    """The release ``user`` may upload to, created with its project when new (the call that
    creates a project reserves its name: True)."""
    normalized, parsed = parse_name_version(name, version)
    project, reserved = _project(request, user, name, normalized)
    return _release(request.db, project, parsed, version), reserved


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


def create(request, user, name, version) -> tuple[PublishingSession, bool]:
    """A new publishing session, or (existing live session, False) for the 409 case."""
    db = request.db
    settings = request.registry["upload2.settings"]
    release, reserved = release_for(request, user, name, version)
    project = release.project
    existing = _live_session(db, release)
    if existing is not None:
        return existing, False
    token = secrets.token_urlsafe(32)  # 256 bits
    session = PublishingSession(
        token=token, token_digest=token_digest(token), name=project.name, version=version,
        project=project, release=release, created_by_id=user.id, reserves_name=reserved,
        status=PublishingStatus.OPEN, notices=[],
        expires_at=utcnow() + datetime.timedelta(seconds=settings.session_lifetime),
    )
    if not _insert(db, session):
        return _live_session(db, release), False
    return session, True


def extension(request, extend_for) -> datetime.timedelta:
    """The request's ``extend-for``, validated, and capped so no request can overflow a date."""
    if extend_for is None:
        raise BadRequest("Missing key", "The request has no 'extend-for' key.", source="extend-for")
    if not isinstance(extend_for, int) or isinstance(extend_for, bool) or extend_for < 0:
        raise BadRequest("Invalid extension", "'extend-for' must be a non-negative integer.", source="extend-for")
    settings = request.registry["upload2.settings"]
    return datetime.timedelta(seconds=min(extend_for, settings.max_session_lifetime))


def extend(request, session: PublishingSession, extend_for) -> None:
    """Extend up to the configured maximum lifetime; never earlier, never an error."""
    wanted = extension(request, extend_for)
    if session.status not in states.LIVE_PUBLISHING:
        return
    settings = request.registry["upload2.settings"]
    limit = session.created + datetime.timedelta(seconds=settings.max_session_lifetime)
    session.expires_at = max(session.expires_at, min(utcnow() + wanted, limit))


def cancel(request, session: PublishingSession) -> None:
    """Cancel: discard every file, free a reserved new name, purge the bytes after commit."""
    states.publishing(session, "cancel")
    _discard(request, session)


def _discard(request, session: PublishingSession) -> None:
    db = request.db
    session.ended_at = utcnow()
    keys = []
    for f in live_files(session):
        states.file_upload(f, "discard")
        keys += [f.blob_key, f.metadata_key]
    release, project = session.release, session.project
    if project is not None and project.registered_at is None and not _other_live_sessions(db, session):
        db.delete(project)  # the reservation ends as if the name was never used
    elif release is not None and not release.published and not release.files:
        db.delete(release)
    db.flush()
    purge_after_commit(request, keys)


def _other_live_sessions(db, session: PublishingSession) -> bool:
    # Another version's session of a reserved name still holds the reservation.
    return db.scalar(sa.select(sa.func.count()).select_from(PublishingSession).where(
        PublishingSession.project_id == session.project_id, PublishingSession.id != session.id,
        PublishingSession.status.in_(states.LIVE_PUBLISHING))) > 0


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
