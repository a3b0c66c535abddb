"""Publishing sessions: create (reserving a new name), cancel, extend. Publication is
services/publication.py."""

from __future__ import annotations

import datetime
import secrets

import sqlalchemy as sa
from sqlalchemy import orm

from .. import logs, states
from ..db import insert, utcnow
from ..interfaces import IAuthorization, IProjects
from ..models import FileUploadSession, NameReservation, PublishingSession
from ..problems import BadRequest, Conflict, Forbidden
from ..states import FileStatus
from . import loading
from .auth import secret_digest
from .cleanup import purge_after_commit
from .versions import canonical_version, parse_name_version


def live_files(session: PublishingSession) -> list[FileUploadSession]:
    return [f for f in session.files if f.status != FileStatus.CANCELED]


def reserve_name(request, who, name: str, normalized: str) -> None:
    """Hold a new project name for ``who``'s first-release sessions (the PEP's reservation),
    after the host's naming rules and registration policy allow it."""
    db = request.db
    if not request.find_service(IAuthorization).may_register(request, who, normalized):
        raise Forbidden("Not allowed", f"You may not register {name!r}.", source="name")
    request.find_service(IProjects).check_new_name(request, who, name)
    key = loading.principal_key(request, who)
    # Twice: a reservation read here may end (its session published or ended) before the
    # insert, which then takes the name; and one inserted meanwhile refuses the insert.
    for _attempt in range(2):
        held = db.get(NameReservation, normalized, populate_existing=True)
        if held is not None:
            if held.principal_key == key:
                return
            break
        if insert(db, NameReservation(normalized_name=normalized, principal_key=key)):
            return
    raise Forbidden("Name reserved", f"{name!r} is reserved by another uploader's first release.", source="name")


def create(request, who, name, version) -> PublishingSession:
    """A new publishing session for ``name`` ``version``; 409 with the live one's URL when
    the release has one already."""
    db = request.db
    settings = request.registry["upload2.settings"]
    name, normalized, parsed = parse_name_version(name, version)
    logs.note(request, project=normalized)
    project = request.find_service(IProjects).find(request, normalized)
    if project is None:
        reserve_name(request, who, name, normalized)
    elif not request.find_service(IAuthorization).may_upload(request, who, project):
        raise Forbidden("Not allowed", f"You may not upload to {name!r}.", source="name")
    else:
        name = request.find_service(IProjects).display_name(project)
    token = secrets.token_urlsafe(32)  # 256 bits
    session = PublishingSession(
        token=token, token_digest=secret_digest(token), name=name, normalized_name=normalized,
        version=version, canonical_version=canonical_version(parsed),
        created_by=loading.principal_key(request, who), status=states.PublishingStatus.OPEN, notices=[],
        expires_at=utcnow() + datetime.timedelta(seconds=settings.session_lifetime),
    )
    if not insert(db, session):
        existing = loading.live_session_of(db, normalized, session.canonical_version)
        raise session_exists(request, existing or session)
    logs.note(request, session=session.id)
    orm.attributes.set_committed_value(session, "files", [])  # a new session has none: no query for them
    session.host_project = project  # as loading.authorize sets it: later steps of this request use it
    session.host_principal = who
    return session


def session_exists(request, session: PublishingSession) -> Conflict:
    location = request.route_url("upload2.session", token=session.token)
    return Conflict("Session exists",
                    f"A publishing session for {session.name} {session.version} is already {session.status}.",
                    source="version", headers={"Location": location})


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
    session.ended_at = utcnow()
    if session.group_id is not None and session.group.status in states.LIVE_PUBLISHING:
        session.group = None  # it leaves its open group (one canceled with its group stays in it)
    keys = []
    for f in live_files(session):
        states.file_upload(f, "discard")
        keys += [f.blob_key, f.metadata_key]
    request.db.flush()
    release_name(request.db, session)
    purge_after_commit(request, keys)
    by = request.environ.get(logs.CONTEXT, {}).get("user", "the index (expired)")
    logs.audit(request, f"canceled {session.name} {session.version}: session {session.id}, by {by}")


def release_name(db, session: PublishingSession) -> None:
    """The reservation ends with the last live session of the name, as if it was never used."""
    others = db.scalar(sa.select(sa.func.count()).select_from(PublishingSession).where(
        PublishingSession.normalized_name == session.normalized_name, PublishingSession.id != session.id,
        PublishingSession.status.in_(states.LIVE_PUBLISHING)))
    if not others:
        db.execute(sa.delete(NameReservation).where(NameReservation.normalized_name == session.normalized_name))
