"""Publishing sessions: create, authorize, publish atomically, cancel, extend."""

from __future__ import annotations

import datetime
import hashlib
import secrets

import sqlalchemy as sa
from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

from .. import states
from ..db import utcnow
from ..interfaces import IAuthorization
from ..models import FileUploadSession, Project, PublishingSession, Release, ReleaseFile, Role
from ..problems import BadRequest, Conflict, Forbidden
from ..states import FileStatus, PublishingStatus
from .cleanup import purge_after_commit


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find(db, token: str) -> PublishingSession | None:
    return db.scalar(sa.select(PublishingSession).where(PublishingSession.token_digest == token_digest(token)))


def live_files(session: PublishingSession) -> list[FileUploadSession]:
    return [f for f in session.files if f.status != FileStatus.CANCELED]


def parse_name_version(name, version) -> tuple[str, Version]:
    if not isinstance(name, str):
        raise BadRequest("Invalid project name", "'name' must be a string.", source="name")
    try:
        normalized = canonicalize_name(name, validate=True)
    except InvalidName:
        raise BadRequest("Invalid project name", f"{name!r} is not a valid project name.", source="name")
    if not isinstance(version, str):
        raise BadRequest("Invalid version", "'version' must be a string.", source="version")
    try:
        return normalized, Version(version)
    except InvalidVersion:
        raise BadRequest("Invalid version", f"{version!r} is not a valid version.", source="version")


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
    canonical = str(version)
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


def create(request, user, name, version) -> tuple[PublishingSession, bool]:
    """A new publishing session, or (existing live session, False) for the 409 case."""
    normalized, parsed = parse_name_version(name, version)
    db = request.db
    settings = request.registry["upload2.settings"]
    project, reserved = _project(request, user, name, normalized)
    release = _release(db, project, parsed, version)
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


def extend(request, session: PublishingSession, extend_for) -> None:
    """Extend up to the configured maximum lifetime; never earlier, never an error."""
    if not isinstance(extend_for, int) or isinstance(extend_for, bool) or extend_for < 0:
        raise BadRequest("Invalid extension", "'extend-for' must be a non-negative integer.", source="extend-for")
    if session.status not in states.LIVE_PUBLISHING:
        return
    settings = request.registry["upload2.settings"]
    limit = session.created + datetime.timedelta(seconds=settings.max_session_lifetime)
    wanted = min(utcnow() + datetime.timedelta(seconds=extend_for), limit)
    session.expires_at = max(session.expires_at, wanted)


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
    if session.reserves_name and project is not None and project.registered_at is None:
        db.delete(project)  # the reservation ends as if the name was never used
    elif release is not None and not release.published and not release.files:
        db.delete(release)
    db.flush()
    purge_after_commit(request, keys)


def publish(request, session: PublishingSession) -> None:
    """Publish every completed file atomically, or raise 409 and change nothing."""
    db = request.db
    states.publishing(session, "publish", dry_run=True)
    files = live_files(session)
    unfinished = [f for f in files if f.status != FileStatus.COMPLETED]
    if unfinished:
        raise Conflict(
            "Files are not completed",
            "Every file must be completed before the session can be published.",
            errors=[{"source": f.filename, "message": f"status is {f.status}"} for f in unfinished],
        )
    now = utcnow()
    release = session.release
    rows = [
        ReleaseFile(release_id=release.id, filename=f.filename, packagetype=f.packagetype,
                    size=f.received_size, sha256=f.sha256, requires_python=f.requires_python,
                    blob_key=f.blob_key, metadata_sha256=f.metadata_sha256,
                    uploaded_at=f.received_at, published_at=now, publishing_session_id=session.id)
        for f in files
    ]
    try:
        # The database's unique filename (and one-sdist) constraints make this atomic
        # against concurrent publishes and legacy uploads of the same filenames.
        with db.begin_nested():
            db.add_all(rows)
            db.flush()
    except sa.exc.IntegrityError:
        raise _conflict(db, release, files)
    release.published = True
    release.published_at = release.published_at or now
    if session.project.registered_at is None:
        session.project.registered_at = now
    states.publishing(session, "publish")
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
