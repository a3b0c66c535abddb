"""Scheduled publish, an extension of this index (docs/api.md): a publish request with
``vnd-upload2-publish-after`` reserves the filenames at once, as a deferred publish does, and
the session waits in ``processing`` until that time; a periodic task (``publish_due``) then
hands it to the deferred publish, which checks and concludes. The PEP refuses to cancel a
processing session, so an explicit unschedule first brings it back to ``open``.
"""

from __future__ import annotations

import datetime

from .. import states
from ..db import utcnow
from ..interfaces import IFilenames
from ..models import PublishingSession
from ..problems import BadRequest, Conflict, UnprocessableContent
from .publishing import live_files

PUBLISH_AFTER = "vnd-upload2-publish-after"
# A scheduled session stays at least this long after its time, so a failed publish can be fixed.
AFTER_THE_TIME = datetime.timedelta(days=1)


def latest(request, session: PublishingSession) -> datetime.datetime:
    """The latest time a session may be scheduled for: its longest lifetime."""
    return session.created + datetime.timedelta(seconds=request.registry["upload2.settings"].max_session_lifetime)


def requested_time(request, session: PublishingSession, body: dict) -> datetime.datetime | None:
    """The publish request's ``publish-after`` time (UTC), validated; None when it has none."""
    value = body.get(PUBLISH_AFTER)
    if value is None:
        return None
    if not request.registry["upload2.settings"].scheduled_publish:
        raise UnprocessableContent("Scheduled publish unavailable",
                                   "This index runs no periodic tasks, so nothing would publish the session "
                                   "at that time; publish it when it is due.", source=PUBLISH_AFTER)
    try:
        when = datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.utcoffset() != datetime.timedelta(0):
        raise BadRequest("Invalid time", f"{PUBLISH_AFTER!r} must be an RFC 3339 time in UTC, "
                         "e.g. 2026-12-08T14:00:00Z.", source=PUBLISH_AFTER)
    when = when.astimezone(datetime.UTC).replace(microsecond=0)
    if when <= utcnow():
        raise BadRequest("Invalid time", f"{PUBLISH_AFTER!r} must be in the future; publish without it "
                         "to publish now.", source=PUBLISH_AFTER)
    if when > (last := latest(request, session)):
        raise BadRequest("Invalid time", f"{PUBLISH_AFTER!r} may be at most {last:%Y-%m-%dT%H:%M:%SZ}, the "
                         "session's longest lifetime.", source=PUBLISH_AFTER)
    return when


def wait(request, session: PublishingSession, when: datetime.datetime) -> None:
    """The session (or release group), its filenames reserved, waits for ``when``; expiry
    never comes first."""
    (states.publishing if isinstance(session, PublishingSession) else states.group)(session, "defer")
    session.notices = []
    session.publish_after = when
    session.processing_since = when  # the re-send deadline counts from the time it is due
    session.expires_at = max(session.expires_at, min(when + AFTER_THE_TIME, latest(request, session)))


def unschedule(request, session: PublishingSession, what: str = "session") -> None:
    """Back to ``open``, the reservation released, before the time has come (a release group:
    its own move, and its sessions reopened by services/groups.py)."""
    if session.publish_after is None:
        raise Conflict("Not scheduled", f"The {what} is not waiting for a scheduled publish"
                       + (f"; it is {session.status}." if session.status != states.PublishingStatus.PROCESSING
                          else "; its publish is already in progress."), source="status")
    session.publish_after = session.processing_since = None
    if isinstance(session, PublishingSession):
        reopen(request, session)
    else:
        states.group(session, "unschedule")


def reopen(request, session: PublishingSession) -> None:
    """A session waiting in ``processing`` (scheduled, or held by its group) back to ``open``,
    its filenames released."""
    states.publishing(session, "unschedule")
    request.find_service(IFilenames).release(request, [f.filename for f in live_files(session)])
