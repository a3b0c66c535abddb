"""Release groups, an extension of this index (docs/api.md): publishing sessions of different
projects, published together or not at all.

A group's publish is each member's own publish (services/publication.py) in the one
transaction of the request: the first refusal aborts it, and every member is left as it was.
Deferred or scheduled, each member is held in ``processing`` with its filenames reserved, and
one task (``publish_group``) runs every member's checks and settles them together. Rows are
locked in services/loading.py's order: the group, then its sessions by id.
"""

from __future__ import annotations

import datetime
import secrets

from sqlalchemy import orm

from .. import logs, states
from ..db import utcnow
from ..interfaces import ITaskQueue
from ..models import PublishingSession, ReleaseGroup
from ..problems import BadRequest, Conflict, Problem
from ..states import PublishingStatus
from . import loading, preflight, publication, publishing, schedule
from .auth import secret_digest

# Bounds one request's work (every member is loaded, authorized and locked on each request).
MAX_SESSIONS = 50


def create(request, who, tokens) -> ReleaseGroup:
    """A new open group, empty or holding the sessions ``tokens`` name."""
    if tokens is None:
        tokens = []
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise BadRequest("Invalid sessions", "'sessions' must be a list of session tokens.", source="sessions")
    settings = request.registry["upload2.settings"]
    token = secrets.token_urlsafe(32)  # 256 bits
    group = ReleaseGroup(token=token, token_digest=secret_digest(token), created_by=loading.principal_key(request, who),
                         status=PublishingStatus.OPEN, notices=[],
                         expires_at=utcnow() + datetime.timedelta(seconds=settings.session_lifetime))
    request.db.add(group)
    request.db.flush()
    orm.attributes.set_committed_value(group, "sessions", [])
    group.host_principal = who
    # The fixed lock order: sessions by id (tokens say nothing of it).
    members = [loading.session_by_token(request, who, t) for t in dict.fromkeys(tokens)]
    for session in sorted(members, key=lambda s: s.id):
        add(request, group, loading.locked_session(request.db, session.id))
    logs.note(request, group=group.id)
    return group


def add(request, group: ReleaseGroup, session: PublishingSession) -> None:
    """``session`` (locked after the group) joins the open group: one session per project, and
    none of another group's or one being published."""
    states.group(group, "edit", dry_run=True)
    if session.group_id == group.id:
        return
    states.publishing(session, "edit", dry_run=True)
    if session.group_id is not None:
        raise Conflict("Session in another group", f"{session.name} {session.version} belongs to another release "
                       "group; remove it from that one first.", source="session-token")
    if any(m.normalized_name == session.normalized_name for m in group.sessions):
        raise Conflict("Project already in the group", f"The group already holds a session of {session.name}.",
                       source="session-token")
    if len(group.sessions) >= MAX_SESSIONS:
        raise Conflict("Group full", f"A release group holds at most {MAX_SESSIONS} sessions.",
                       source="session-token")
    group.sessions.append(session)
    request.db.flush()


def remove(request, group: ReleaseGroup, session_token: str) -> None:
    """The member named by ``session_token`` leaves the open group, staged as it is."""
    states.group(group, "edit", dry_run=True)
    digest = secret_digest(session_token)
    member = next((s for s in group.sessions if s.token_digest == digest), None)
    if member is None:
        raise Conflict("Not in the group", "No session of this group has this token.", source="url")
    group.sessions.remove(member)
    request.db.flush()


def publish(request, group: ReleaseGroup, publish_after: datetime.datetime | None = None) -> None:
    """Publish every member, each exactly as it would be published alone, or none: a refusal
    for any raises, and the request's transaction aborts with every member unchanged.
    Deferred (``upload2.publish_mode``) or scheduled, the members are held for the group's task."""
    states.group(group, "publish", dry_run=True)
    deferred = publish_after is not None or request.registry["upload2.settings"].publish_mode == "deferred"
    for session in group.sessions:
        publication.publish(request, session, session.host_project, deferrable=False,
                            grouped="held" if deferred else "now")
    if publish_after is not None:
        schedule.wait(request, group, publish_after)
    elif deferred:
        states.group(group, "defer")
        group.notices = []
        group.processing_since = utcnow()
        request.find_service(ITaskQueue).enqueue("publish_group", group.id)
    else:
        _end(request, group, "publish")


def _end(request, group: ReleaseGroup, event: str) -> None:
    states.group(group, event)
    group.processing_since = None
    group.ended_at = utcnow()
    logs.audit(request, f"published release group {group.id}: "
                        f"{', '.join(f'{s.name} {s.version}' for s in group.sessions) or '-'}")


def cancel(request, group: ReleaseGroup) -> None:
    """Cancel the group and every session in it (they stay its members, canceled)."""
    states.group(group, "cancel")
    group.ended_at = utcnow()
    for session in group.sessions:
        publishing.cancel(request, session)


def extend(request, group: ReleaseGroup, extend_for) -> None:
    """Extend the group and each of its sessions, as a session is extended."""
    publishing.extend(request, group, extend_for)
    for session in group.sessions:
        publishing.extend(request, session, extend_for)


def unschedule(request, group: ReleaseGroup) -> None:
    """Before its time, a scheduled group and its sessions go back to open."""
    schedule.unschedule(request, group, what="release group")
    for session in group.sessions:
        schedule.reopen(request, session)


def problems(request, group: ReleaseGroup) -> list[dict]:
    """Every problem a publish of the group would fail with now: each member's preflight,
    its messages naming the member."""
    errors: list[dict] = []
    try:
        states.group(group, "publish", dry_run=True)
    except Problem as refusal:
        errors += refusal.errors
    for session in group.sessions:
        errors += [{"source": e["source"], "message": f"{session.name} {session.version}: {e['message']}"}
                   for e in preflight.problems(request, session, session.host_project, grouped=True)]
    return errors


# -- the deferred publish's task (tasks.publish_group) -----------------------------------------

def _waiting(group: ReleaseGroup | None) -> bool:
    return group is not None and group.status == PublishingStatus.PROCESSING and group.publish_after is None


def check(request, group_id: int) -> dict[int, list[dict]]:
    """The task's first step, outside any lock: each member's publish checks' problems."""
    group = request.db.get(ReleaseGroup, group_id)
    if not _waiting(group):
        return {}
    return {session.id: publication.check(request, session.id) for session in group.sessions}


def conclude(request, group_id: int, errors: dict[int, list[dict]]) -> None:
    """The task's last step: publish every member at once, or release them all and report.
    Idempotent: a group no longer processing is left as it is."""
    group = loading.locked_group(request.db, group_id)
    if not _waiting(group):
        return
    if publication.settle(request, group.sessions, errors):
        _end(request, group, "succeed")
        return
    states.group(group, "fail")
    group.processing_since = None
    bystander = publication.PUBLISH_NOTICE + publication.GROUP_FAILED["message"]
    group.notices = [publication.PUBLISH_NOTICE + f"{s.name} {s.version}: {n.removeprefix(publication.PUBLISH_NOTICE)}"
                     for s in group.sessions for n in s.notices
                     if n.startswith(publication.PUBLISH_NOTICE) and n != bystander]
