"""Publication: a session's completed files become the host's published files at once, or
not at all. The one path for both doors: the 2.0 API's publish and each legacy upload.

Synchronously within the request, or (``upload2.publish_mode = deferred``) in a task: the
request reserves the filenames (every door then refuses them) and a task runs the publish
checks and concludes, publishing or releasing the reservation.
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from packaging.version import Version

from .. import logs, states
from ..db import utcnow
from ..interfaces import IFilenames, IProjects, IPublishApproval, IPublisher, IReleases, ITaskQueue
from ..models import FileUploadSession, NameReservation, PublishingSession
from ..problems import BadRequest, Conflict, Forbidden, Problem, UnprocessableContent
from ..states import FileStatus, PublishingStatus
from . import checks, loading, schedule
from .publishing import live_files


def new_files_window_closed(request, session: PublishingSession, project) -> str | None:
    """Why no file may join the session's release now, or None: files join a published
    release only within ``new_files_window`` seconds of its first publication (0: forever)."""
    window = request.registry["upload2.settings"].new_files_window
    if not window or project is None:
        return None
    first = request.find_service(IReleases).first_published(request, project, Version(session.version))
    if first is None or utcnow() <= first + datetime.timedelta(seconds=window):
        return None
    return (f"Version {session.version} was first published at {first:%Y-%m-%d %H:%M:%S} UTC; "
            f"new files can be added only within {window} seconds of that.")


def check_new_files_window(request, session: PublishingSession, project, source: str = "filename") -> None:
    """Refuse (400) a file joining the release after its new-files window: every upload asks
    when a file arrives, and every publish asks again (a session may outlive the window)."""
    if (reason := new_files_window_closed(request, session, project)) is not None:
        raise BadRequest("New files window closed", reason, source=source)


STAGE_ONLY = ("This credential may stage and cancel releases but not publish them: it lacks the publish "
              "permission. Publish with a credential that has it, e.g. a maintainer's own token.")


def may_publish(request, session: PublishingSession, project) -> bool:
    """The host's IPublishApproval says the principal the request was authorized as may
    publish (without one, whoever may upload may publish)."""
    try:
        approval = request.find_service(IPublishApproval)
    except LookupError:
        return True
    return bool(approval.may_publish(request, session.host_principal, project))


IN_GROUP = ("The session belongs to an open release group: publish the group, or remove the session "
            "from it first.")


def publish(request, session: PublishingSession, project, *, deferrable: bool = True,
            publish_after: datetime.datetime | None = None, grouped: str | None = None) -> None:
    """Publish every completed file atomically, or (``upload2.publish_mode`` deferred, when
    ``deferrable``) reserve their filenames and leave the rest to a task: the session is then
    ``processing``; with ``publish_after``, processing waits for that time (services/schedule.py).
    A failure raises (409 for a conflict, 422 for a failed publish check) and changes nothing.

    ``grouped``: the session is published as a member of its release group (services/groups.py),
    at once ("now") or held in ``processing``, its filenames reserved, for the group's task to
    conclude ("held"); alone, a member of a group is refused."""
    states.publishing(session, "publish", dry_run=True)
    if grouped is None and session.group_id is not None:
        raise Conflict("Session in a release group", IN_GROUP, source="vnd-upload2-group")
    if not may_publish(request, session, project):
        raise Forbidden("Publish not allowed", STAGE_ONLY, source="authorization")
    files = live_files(session)
    if files:  # publishing no file adds none: only ends the session
        check_new_files_window(request, session, project, source="session")
    unfinished = [f for f in files if f.status != FileStatus.COMPLETED]
    if unfinished:
        raise Conflict(
            "Files are not completed",
            "Every file must be completed before the session can be published.",
            errors=[{"source": f.filename, "message": f"status is {f.status}"} for f in unfinished],
        )
    deferred = grouped == "held" or publish_after is not None or (
        deferrable and grouped is None and request.registry["upload2.settings"].publish_mode == "deferred")
    if not deferred and (errors := checks.run(request, session, files)):
        raise UnprocessableContent("Publish checks failed", "Some files may not be published.", errors=errors)
    # The host's namespace settles races with every other door (the PEP's reservation).
    request.find_service(IFilenames).reserve(request, [f.filename for f in files])
    if grouped == "held":
        _hold(session, files)
    elif publish_after is not None:
        _clear_publish_notices(session, files)
        schedule.wait(request, session, publish_after)
    elif deferred:
        _defer(request, session, files)
    else:
        _publish_reserved(request, session, files, project, "publish")


def _publish_reserved(request, session: PublishingSession, files, project, event: str) -> None:
    if project is None:  # the reservation becomes a registration
        project = _register(request, session, event)
    request.find_service(IPublisher).publish(request, session, files, project)
    request.db.execute(sa.delete(NameReservation).where(NameReservation.normalized_name == session.normalized_name))
    states.publishing(session, event)
    session.processing_since = None
    session.ended_at = utcnow()
    logs.audit(request, f"published {session.name} {session.version}: {len(files)} file(s) "
                        f"{', '.join(f.filename for f in files) or '-'}; session {session.id}, "
                        f"created by {session.created_by}")


def _register(request, session: PublishingSession, event: str):
    """Register the reserved name. On PostgreSQL two sessions of one reservation can publish
    at once: the later one finds the name registered meanwhile, and joins the project when
    its caller may upload to it, as any later release would (a task's publish fails instead,
    and may be retried)."""
    try:
        return request.find_service(IProjects).register(request, session.created_by, session.name)
    except Conflict:
        if event != "publish" or loading.project(request, session) is None:
            raise
        return loading.authorize(request, loading.principal(request), session)


# -- deferred publish (upload2.publish_mode = deferred): the request defers, a task settles ---

# Prefixes the notices a failed publish leaves, so the next attempt can clear them.
PUBLISH_NOTICE = "Publish failed: "


def _clear_publish_notices(session: PublishingSession, files: list[FileUploadSession]) -> None:
    for f in files:
        f.notices = [n for n in f.notices if not n.startswith(PUBLISH_NOTICE)]


def _hold(session: PublishingSession, files: list[FileUploadSession]) -> None:
    """Processing, for its group's task: no deadline of its own, so no sweep re-sends it alone."""
    states.publishing(session, "defer")
    session.notices = []
    _clear_publish_notices(session, files)
    session.processing_since = None


def _defer(request, session: PublishingSession, files: list[FileUploadSession]) -> None:
    _hold(session, files)
    session.processing_since = utcnow()
    request.find_service(ITaskQueue).enqueue("publish_session", session.id)


def check(request, session_id: int) -> list[dict]:
    """The task's first step: the publish checks' problems (outside any lock: a scan may be slow)."""
    session = request.db.get(PublishingSession, session_id)
    if session is None or session.status != PublishingStatus.PROCESSING or session.publish_after is not None:
        return []  # ended, or still waiting for its scheduled time
    files = live_files(session)
    # The files become public when the task concludes: the window may have closed since the request.
    if files and (closed := new_files_window_closed(request, session, loading.project(request, session))):
        return [{"source": "session", "message": closed}]
    return checks.run(request, session, files)


def conclude(request, session_id: int, errors: list[dict]) -> None:
    """The task's last step: publish the reserved files at once, or release them and report
    ``errors``. Idempotent: a session no longer processing is left as it is, and so is a
    release group's member (the group's task concludes it)."""
    session = loading.locked_session(request.db, session_id)
    if (session is None or session.status != PublishingStatus.PROCESSING or session.publish_after is not None
            or session.group_id is not None):
        return
    settle(request, [session], {session.id: errors})


GROUP_FAILED = {"source": "session", "message": "another session of its release group failed to publish"}


def settle(request, sessions: list[PublishingSession], errors: dict[int, list[dict]]) -> bool:
    """Publish the reserved files of every one of ``sessions`` at once, or none: with an error
    for any (``errors`` by session id), or a refusal of the host, each is released and goes to
    error. True when they were published."""
    if not any(errors.values()):
        try:
            with request.db.begin_nested():
                for session in sessions:
                    failing = session
                    _publish_reserved(request, session, live_files(session), loading.project(request, session),
                                      "succeed")
            return True
        except Problem as refusal:  # the host refused: a conflict, its naming rules, its limits
            errors = {failing.id: refusal.errors}
    for session in sessions:
        _fail(request, session, live_files(session), errors.get(session.id) or [GROUP_FAILED])
    return False


def _fail(request, session: PublishingSession, files, errors: list[dict]) -> None:
    """Release the reservation; the session goes to error, editable again, and its notices
    (and the files' own, where one is to blame) say what failed."""
    request.find_service(IFilenames).release(request, [f.filename for f in files])
    states.publishing(session, "fail")
    session.processing_since = None
    session.notices = [PUBLISH_NOTICE + (e["message"] if e["source"] == "session" else f"{e['source']}: {e['message']}")
                       for e in errors]
    by_name = {f.filename: f for f in files}
    for e in errors:
        if (f := by_name.get(e["source"])) is not None:
            f.notices = [*f.notices, PUBLISH_NOTICE + e["message"]]
    request.db.flush()
