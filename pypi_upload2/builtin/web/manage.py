"""A signed-in maintainer's publishing sessions: the list, a session's page, and its
actions. Each action is a confirmation page (GET) and a form that does it (POST, with a
CSRF token), calling the same loading and services as the JSON API, in the same order."""

from __future__ import annotations

import sqlalchemy as sa
from pyramid.httpexceptions import HTTPNotFound
from pyramid.view import view_config

from ... import states
from ...db import parse_id
from ...models import PublishingSession
from ...problems import Forbidden
from ...services import files, loading, publication, publishing
from . import groups as groups_page
from .actions import EXTENSIONS, done, requested_extension
from .identity import require_user

ACTIONS = {
    "publish": ("Publish", "Publish {release}: its completed files become public at once, and the session ends."),
    "cancel": ("Cancel", "Cancel {release}: every file of the session is discarded, and the session ends."),
    "extend": ("Extend", "Extend {release}: the session expires later (up to the index's maximum lifetime)."),
}


def load(request, *, lock: bool = False) -> PublishingSession:
    """The URL's session, for the signed-in user, by the API's authorization. Another
    project's session is 404, as if it did not exist: its name is not told either."""
    who = require_user(request)
    try:
        return loading.session_by_id(request, who, parse_id(request.matchdict["session_id"]), lock=lock)
    except Forbidden:
        raise HTTPNotFound()


def stage_commands(request, session: PublishingSession) -> dict[str, str]:
    stage = request.route_url("upload2.stage", token=session.token)
    requirement = f"{session.name}=={session.version}"
    return {"pip": f"pip install --index-url {stage} {requirement}",
            "uv": f"uv pip install --index-url {stage} {requirement}"}


def _session_url(request, session: PublishingSession) -> str:
    return request.route_url("web.session", session_id=session.id)


def _back(request, session: PublishingSession) -> dict:
    """Where a confirmation page leads back to, changing nothing."""
    return {"back_url": _session_url(request, session), "back_label": f"{session.name} {session.version}"}


@view_config(route_name="web.sessions", request_method="GET", renderer="sessions.html")
def session_list(request):
    who = require_user(request)
    live = request.db.scalars(sa.select(PublishingSession).where(
        PublishingSession.status.in_(states.LIVE_PUBLISHING)).order_by(PublishingSession.expires_at))
    return {"sessions": [s for s in live if loading.may_upload(request, who, s)[0]],
            "groups": groups_page.visible(request, who)}


@view_config(route_name="web.session", request_method="GET", renderer="session.html")
def session_page(request):
    session = load(request)
    return {"session": session, "files": publishing.live_files(session),
            "live": session.status in states.LIVE_PUBLISHING,
            "commands": stage_commands(request, session) if session.status in states.LIVE_PUBLISHING else None}


@view_config(route_name="web.session.action", request_method="GET", renderer="confirm.html")
def confirm_action(request):
    session = load(request)
    action = request.matchdict["action"]
    label, text = ACTIONS[action]
    return {**_back(request, session), "label": label,
            "text": text.format(release=f"{session.name} {session.version}"),
            "action_url": request.current_route_url(), "extensions": EXTENSIONS if action == "extend" else None}


@view_config(route_name="web.session.action", request_method="POST", require_csrf=True)
def do_action(request):
    session = load(request, lock=True)
    action = request.matchdict["action"]
    release = f"{session.name} {session.version}"
    if action == "publish":
        publication.publish(request, session, session.host_project)
        message = (f"{release} is being published." if session.status == states.PublishingStatus.PROCESSING
                   else f"Published {release}.")
    elif action == "cancel":
        publishing.cancel(request, session)
        message = f"Canceled {release}."
    else:
        publishing.extend(request, session, requested_extension(request))
        message = f"{release} now expires at {session.expires_at:%Y-%m-%d %H:%M} UTC."
    return done(request, message,
                request.route_url("web.sessions") if action == "cancel" else _session_url(request, session))


@view_config(route_name="web.file.delete", request_method="GET", renderer="confirm.html")
def confirm_delete(request):
    session = load(request)
    file_session = loading.file_session(request, session=session)
    return {**_back(request, session), "label": "Delete file",
            "text": f"Delete {file_session.filename} from {session.name} {session.version}: its bytes are "
                    "discarded, and a file of that name may then be uploaded again.",
            "action_url": request.current_route_url(), "extensions": None}


@view_config(route_name="web.file.delete", request_method="POST", require_csrf=True)
def delete_file(request):
    # As the API's DELETE: the session's row, then the file's.
    session = load(request, lock=True)
    file_session = loading.file_session(request, lock="update", session=session)
    files.delete(request, file_session)
    return done(request, f"Deleted {file_session.filename}.", _session_url(request, session))
