"""Loading and locking: the one place that reads sessions and files for a request or a task,
authorizes the caller, and takes row locks in one fixed order (a release group, then its
publishing sessions by id, then a session's file), so that two writers never wait on each
other in a cycle."""

from __future__ import annotations

import functools

import sqlalchemy as sa
from sqlalchemy import orm

from .. import logs, states
from ..db import parse_id
from ..interfaces import IAuthentication, IAuthorization, IProjects
from ..models import FileUploadSession, PublishingSession, ReleaseGroup
from ..problems import Conflict, Forbidden, NotFound, Unauthorized
from ..states import FileStatus, PublishingStatus
from .auth import basic_credentials, secret_digest

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for FOR UPDATE NOWAIT on a held row


def principal(request):
    """The host's principal making the request; 401 without one."""
    found = request.find_service(IAuthentication, context=None).identify(request)
    if found is None:
        challenge = request.find_service(IAuthentication, context=None).challenge(request)
        if basic_credentials(request) is not None or request.authorization is not None:
            detail = "The token is not valid (or was revoked, or has expired)."
        elif challenge.startswith("Basic "):
            detail = "Send an API token with HTTP Basic authentication, username __token__."
        else:
            detail = f"Authenticate as the WWW-Authenticate header says ({challenge})."
        raise Unauthorized("Authentication required", detail, source="Authorization",
                           headers={"WWW-Authenticate": challenge})
    # A readable name where the host's principal has one (the built-in index's, Warehouse's user).
    username = getattr(found, "username", None) or getattr(getattr(found, "user", None), "username", None)
    logs.note(request, user=username or principal_key(request, found))
    return found


def principal_key(request, who) -> str:
    return request.find_service(IAuthentication, context=None).principal_key(who)


def project(request, session: PublishingSession):
    """The host's project of ``session``; None while its name is only reserved."""
    return request.find_service(IProjects, context=None).find(request, session.normalized_name)


def may_upload(request, who, session: PublishingSession):
    """Whether ``who`` may upload to the session's project now (a reserved name's session:
    the principal that created it), and the host's project."""
    found = project(request, session)
    if found is None:
        return session.created_by == principal_key(request, who), found
    return request.find_service(IAuthorization, context=None).may_upload(request, who, found), found


def authorize(request, who, session: PublishingSession):
    """The PEP's per-request check (``may_upload``), refused with 403. Returns the host's
    project."""
    allowed, found = may_upload(request, who, session)
    logs.note(request, project=session.normalized_name, session=session.id)
    if not allowed:
        raise Forbidden("Not allowed", f"You may not upload to {session.name!r}.", source="authorization")
    session.host_project, session.host_principal = found, who
    return found


# Built once: every request runs them, and a statement object keeps its compiled cache key.
BY_TOKEN = sa.select(PublishingSession).where(PublishingSession.token_digest == sa.bindparam("digest"))
BY_TOKEN_LOCKED = BY_TOKEN.with_for_update()
BY_ID = sa.select(PublishingSession).where(PublishingSession.id == sa.bindparam("id"))
BY_ID_LOCKED = BY_ID.with_for_update()
FILE_LOCKS = {None: None, "update": {}, "nowait": {"nowait": True}, "read": {"read": True}}


@functools.cache
def _file_statement(lock: str | None, mechanism: str | None):
    query = sa.select(FileUploadSession).where(FileUploadSession.id == sa.bindparam("file_id"),
                                               FileUploadSession.publishing_session_id == sa.bindparam("session_id"))
    if mechanism is not None:
        query = query.where(FileUploadSession.mechanism == mechanism)
    return query if FILE_LOCKS[lock] is None else query.with_for_update(**FILE_LOCKS[lock])


def _by_token(request, *, lock: bool = False) -> PublishingSession | None:
    return request.db.scalar(BY_TOKEN_LOCKED if lock else BY_TOKEN,
                             {"digest": secret_digest(request.matchdict["token"])})


def publishing_session(request, *, lock: bool = False) -> PublishingSession:
    """The session the URL's token names, after authorizing the caller; ``lock`` holds its
    row for the rest of the transaction."""
    who = principal(request)
    return _authorized(request, who, _by_token(request, lock=lock))


def session_by_id(request, who, session_id: int | None, *, lock: bool = False) -> PublishingSession:
    """The web pages' way in: a session by its id for a signed-in ``who``, authorized as
    the API authorizes a token's caller."""
    session = None if session_id is None else request.db.scalar(BY_ID_LOCKED if lock else BY_ID, {"id": session_id})
    return _authorized(request, who, session)


def _authorized(request, who, session: PublishingSession | None) -> PublishingSession:
    if session is None:
        raise NotFound("No such session", "There is no publishing session at this URL.", source="url")
    authorize(request, who, session)
    return session


def _file_query(request, session: PublishingSession, mechanism: str | None, lock: str | None):
    file_id = parse_id(request.matchdict["file_id"])
    # No id is -1: a URL that names none matches nothing.
    return _file_statement(lock, mechanism), {"file_id": -1 if file_id is None else file_id, "session_id": session.id}


def file_session(request, *, lock: str | None = None, lock_session: bool = False,
                 mechanism: str | None = None, session: PublishingSession | None = None) -> FileUploadSession:
    """The file the URL names in its session. ``lock``: "update" waits for the row, "nowait"
    fails at once with 409 while another request holds it (two appends never interleave),
    "read" waits for a writer in flight. ``mechanism``: only a file uploaded with it.
    ``session``: one the caller already loaded and authorized (and locked, if it wanted)."""
    if session is None:
        session = publishing_session(request, lock=lock_session)
    query, params = _file_query(request, session, mechanism, lock)
    try:
        found = request.db.scalar(query, params)
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise Conflict("Upload in progress", "Another request is writing to this upload; once it ends, "
                       "resume from the offset HEAD reports.", source="Upload-Offset")
    # A canceled session's files are purged: their URLs are gone with them.
    if found is None or session.status == PublishingStatus.CANCELED:
        raise NotFound("No such file", "There is no file upload session at this URL.", source="url")
    # Hand the file the session just authorized: the ORM keeps loaded objects only while
    # something refers to them, and would otherwise load the session a second time.
    orm.attributes.set_committed_value(found, "publishing_session", session)
    return found


def locked_file(request, file_session: FileUploadSession) -> FileUploadSession:
    """A file the request read unlocked, read again under its row lock (its session's, as
    ``file_session`` had it, stays): 404 when it is gone meanwhile."""
    query = _file_statement("update", file_session.mechanism).execution_options(populate_existing=True)
    found = request.db.scalar(query, {"file_id": file_session.id, "session_id": file_session.publishing_session_id})
    if found is None:
        raise NotFound("No such file", "There is no file upload session at this URL.", source="url")
    return found


def live_stage(request) -> PublishingSession:
    """The session behind a stage URL: the token is the capability, no login needed."""
    session = _by_token(request)
    if session is None or session.status in (PublishingStatus.CANCELED, PublishingStatus.PUBLISHED):
        raise NotFound("No such stage", "There is no staged release at this URL.", source="url")
    return session


def locked_session(db, session_id: int) -> PublishingSession | None:
    """A task's view of a session: loaded fresh under its row lock."""
    return db.scalar(sa.select(PublishingSession).where(PublishingSession.id == session_id)
                     .with_for_update().execution_options(populate_existing=True))


def lock_file(db, file_session: FileUploadSession) -> FileStatus | None:
    """Lock a file a task already read, in the fixed order (its session, then the file), and
    return its status now: another request may have settled or canceled it meanwhile."""
    db.execute(sa.select(PublishingSession.id).where(PublishingSession.id == file_session.publishing_session_id)
               .with_for_update())
    return db.scalar(sa.select(FileUploadSession.status).where(FileUploadSession.id == file_session.id)
                     .with_for_update())


def live_session_of(db, normalized_name: str, version: str) -> PublishingSession | None:
    """The release's live publishing session, if any (version in canonical form)."""
    return db.scalar(sa.select(PublishingSession).where(
        PublishingSession.normalized_name == normalized_name, PublishingSession.canonical_version == version,
        PublishingSession.status.in_(states.LIVE_PUBLISHING)))


# -- release groups (services/groups.py) ------------------------------------------------------

GROUP_BY_TOKEN = sa.select(ReleaseGroup).where(ReleaseGroup.token_digest == sa.bindparam("digest"))
GROUP_BY_TOKEN_LOCKED = GROUP_BY_TOKEN.with_for_update()
GROUP_BY_ID = sa.select(ReleaseGroup).where(ReleaseGroup.id == sa.bindparam("id"))
GROUP_BY_ID_LOCKED = GROUP_BY_ID.with_for_update()


def _members(db, group: ReleaseGroup, *, lock: bool) -> list[PublishingSession]:
    """The group's sessions, by id: the fixed order in which they are locked."""
    query = sa.select(PublishingSession).where(PublishingSession.group_id == group.id).order_by(PublishingSession.id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    members = list(db.scalars(query))
    orm.attributes.set_committed_value(group, "sessions", members)
    for session in members:
        orm.attributes.set_committed_value(session, "group", group)
    return members


def release_group(request, *, lock: bool = False) -> ReleaseGroup:
    """The group the URL's token names, its sessions loaded (``lock``: the group's row, then
    theirs by id) and each authorized as a request on it would be: the caller must be allowed
    to upload to every one of them (an empty group: be the principal that created it)."""
    who = principal(request)
    group = request.db.scalar(GROUP_BY_TOKEN_LOCKED if lock else GROUP_BY_TOKEN,
                              {"digest": secret_digest(request.matchdict["token"])})
    return _authorized_group(request, who, group, lock)


def group_by_id(request, who, group_id: int | None, *, lock: bool = False) -> ReleaseGroup:
    """The web pages' way in: a group by its id for a signed-in ``who``, authorized as the
    API authorizes a token's caller."""
    group = None if group_id is None else request.db.scalar(GROUP_BY_ID_LOCKED if lock else GROUP_BY_ID,
                                                            {"id": group_id})
    return _authorized_group(request, who, group, lock)


def _authorized_group(request, who, group: ReleaseGroup | None, lock: bool) -> ReleaseGroup:
    if group is None:
        raise NotFound("No such group", "There is no release group at this URL.", source="url")
    members = _members(request.db, group, lock=lock)
    if not members and group.created_by != principal_key(request, who):
        raise Forbidden("Not allowed", "Only the principal that created this empty release group may use it.",
                        source="authorization")
    for session in members:
        authorize(request, who, session)
    group.host_principal = who
    return group


def session_by_token(request, who, token, *, lock: bool = False) -> PublishingSession:
    """A session named by its token in a request's body (a group's new member), authorized."""
    session = None
    if isinstance(token, str) and token:
        session = request.db.scalar(BY_TOKEN_LOCKED if lock else BY_TOKEN, {"digest": secret_digest(token)})
    if session is None:
        raise NotFound("No such session", "No publishing session has this token.", source="session-token")
    authorize(request, who, session)
    return session


def live_group_stage(request) -> ReleaseGroup:
    """The group behind a group stage URL (the token is the capability), with its live sessions."""
    group = request.db.scalar(GROUP_BY_TOKEN, {"digest": secret_digest(request.matchdict["token"])})
    if group is None or group.status in states.TERMINAL_PUBLISHING:
        raise NotFound("No such stage", "There is no staged release group at this URL.", source="url")
    _members(request.db, group, lock=False)
    return group


def locked_group(db, group_id: int) -> ReleaseGroup | None:
    """A task's view of a group: loaded fresh under its row lock, then its sessions' by id."""
    group = db.scalar(sa.select(ReleaseGroup).where(ReleaseGroup.id == group_id)
                      .with_for_update().execution_options(populate_existing=True))
    if group is not None:
        _members(db, group, lock=True)
    return group
