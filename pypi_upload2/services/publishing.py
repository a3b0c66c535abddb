"""Publishing sessions: create, authorize, cancel, extend (publication: services/publication.py)."""

from __future__ import annotations

import datetime
import secrets

import sqlalchemy as sa
from packaging.utils import InvalidName, canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version

from .. import states
from ..db import utcnow
from ..interfaces import IAuthorization
from ..models import FileUploadSession, Project, PublishingSession, Release, Role
from ..problems import BadRequest, Forbidden
from ..states import FileStatus, PublishingStatus
from .auth import secret_digest
from .cleanup import purge_after_commit


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
    limit = Release.__table__.c.version.type.length
    version = _string(version, "version", limit)
    try:
        parsed = Version(version)
    except InvalidVersion:
        raise BadRequest("Invalid version", f"{version!r} is not a valid version.", source="version")
    # Normalizing can lengthen a version ("1-1" is 1.post1), and the normal form is stored too.
    if len(canonical_version(parsed)) > Release.__table__.c.canonical_version.type.length:
        raise BadRequest("Invalid version", f"'version' is longer than {limit} characters once normalized.",
                         source="version")
    return normalized, parsed


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


def _project(request, user, display_name: str, normalized: str) -> Project:
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
            return project
        # Someone reserved the name concurrently; treat it as existing.
        project = db.scalar(sa.select(Project).where(Project.normalized_name == normalized))
    if not authz.may_upload(user, project):
        raise Forbidden("Not allowed", f"You may not upload to {display_name!r}.", source="name")
    return project


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


def release_for(request, user, name, version) -> Release:
    """The release ``user`` may upload to, created with its project when new (a new project's
    name is reserved until its first release is published)."""
    normalized, parsed = parse_name_version(name, version)
    return _release(request.db, _project(request, user, name, normalized), parsed, version)


def create(request, user, name, version) -> tuple[PublishingSession, bool]:
    """A new publishing session, or (existing live session, False) for the 409 case."""
    db = request.db
    settings = request.registry["upload2.settings"]
    release = release_for(request, user, name, version)
    project = release.project
    existing = _live_session(db, release)
    if existing is not None:
        return existing, False
    token = secrets.token_urlsafe(32)  # 256 bits
    session = PublishingSession(
        token=token, token_digest=secret_digest(token), name=project.name, version=version,
        project=project, release=release, created_by_id=user.id,
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
