"""Resolve the principal and the session a 2.0 request addresses, authorizing every time."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy import orm

from ..db import parse_id
from ..interfaces import IAuthentication
from ..models import FileUploadSession, PublishingSession
from ..problems import BadRequest, ContentTooLarge, NotFound, Unauthorized, UnsupportedMediaType
from ..services.auth import secret_digest
from ..services.publishing import authorize
from ..states import PublishingStatus

CONTENT_TYPE = "application/vnd.pypi.upload.v2+json"
# The API's JSON requests are a few hundred bytes; anything near this is not one.
MAX_JSON_BODY = 64 * 1024


def authenticated_user(request):
    user = request.find_service(IAuthentication).identify(request)
    if user is None:
        realm = request.registry["upload2.settings"].realm
        raise Unauthorized("Authentication required",
                           "Send an API token with HTTP Basic authentication, username __token__.",
                           source="Authorization", headers={"WWW-Authenticate": f'Basic realm="{realm}"'})
    return user


def json_body(request) -> dict:
    """The request's JSON object, after the PEP's Content-Type and api-version checks."""
    if request.content_type.lower() != CONTENT_TYPE:  # media types are case-insensitive
        raise UnsupportedMediaType("Unsupported Content-Type",
                                   f"Send {CONTENT_TYPE}, not {request.content_type or 'nothing'}.",
                                   source="Content-Type")
    # Read at most the limit ourselves: ``request.body`` would spool a large body to an
    # unclosed temporary file first.
    raw = request.body_file.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise ContentTooLarge("Request too large", f"A JSON request body may be at most {MAX_JSON_BODY} bytes.",
                              source="body")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Malformed JSON", f"The request body is not valid JSON: {exc}.", source="body")
    except RecursionError:  # hostile nesting, e.g. 100,000 "["
        raise BadRequest("Malformed JSON", "The request body is nested too deeply.", source="body")
    if not isinstance(body, dict):
        raise BadRequest("Malformed JSON", "The request body must be a JSON object.", source="body")
    meta = body.get("meta")
    if not isinstance(meta, dict) or "api-version" not in meta:
        raise BadRequest("Missing key", "The request has no 'meta.api-version' key.", source="meta.api-version")
    if meta["api-version"] != "2.0":
        raise BadRequest("Unsupported API version",
                         f"'meta.api-version' is {meta['api-version']!r}; this server speaks '2.0'.",
                         source="meta.api-version")
    return body


def publishing_session_context(request, *, edit: bool = False) -> PublishingSession:
    """The addressed session; ``edit`` locks its row for the rest of the transaction."""
    user = authenticated_user(request)
    # The project comes in the same query: authorization needs it on every request.
    query = sa.select(PublishingSession).options(orm.joinedload(PublishingSession.project)).where(
        PublishingSession.token_digest == secret_digest(request.matchdict["token"]))
    if edit:
        query = query.with_for_update(of=PublishingSession)
    session = request.db.scalar(query)
    if session is None:
        raise NotFound("No such session", "There is no publishing session at this URL.", source="url")
    authorize(request, user, session)
    return session


def addressed_file(request, session: PublishingSession):
    """The condition on file upload sessions that the URL's ``file_id`` names, in ``session``."""
    file_id = parse_id(request.matchdict["file_id"])
    return sa.and_(FileUploadSession.id == file_id if file_id is not None else sa.false(),
                   FileUploadSession.publishing_session_id == session.id)


def file_session_context(request, *, edit: bool = False, lock_session: bool = False) -> FileUploadSession:
    """The addressed file; ``edit`` locks its row (after the session's, with ``lock_session``,
    the order every writer follows, so two writers never wait on each other in a cycle)."""
    session = publishing_session_context(request, edit=lock_session)
    query = sa.select(FileUploadSession).where(addressed_file(request, session))
    if edit:
        query = query.with_for_update()
    file_session = request.db.scalar(query)
    # A canceled session's files are purged: their URLs are gone with them.
    if file_session is None or session.status == PublishingStatus.CANCELED:
        raise NotFound("No such file", "There is no file upload session at this URL.", source="url")
    with_session(file_session, session)
    return file_session


def with_session(file_session: FileUploadSession, session: PublishingSession) -> None:
    """Hand the file the session just authorized: the ORM keeps loaded objects only while
    something refers to them, and would otherwise load the session a second time."""
    orm.attributes.set_committed_value(file_session, "publishing_session", session)


def live_stage(request) -> PublishingSession:
    """The session behind a stage URL: the token is the capability, no login needed."""
    session = request.db.scalar(sa.select(PublishingSession).where(
        PublishingSession.token_digest == secret_digest(request.matchdict["token"])))
    if session is None or session.status in (PublishingStatus.CANCELED, PublishingStatus.PUBLISHED):
        raise NotFound("No such stage", "There is no staged release at this URL.", source="url")
    return session
