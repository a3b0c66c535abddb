"""A signed-in maintainer's release groups: in the sessions list, a group's page, and its
publish, cancel and extend behind confirmation pages, through the same loading and service
as the API's group requests (services/groups.py)."""

from __future__ import annotations

import sqlalchemy as sa
from pyramid.httpexceptions import HTTPNotFound
from pyramid.view import view_config

from ... import states
from ...db import parse_id
from ...models import ReleaseGroup
from ...problems import Forbidden, NotFound
from ...services import groups, loading
from .actions import EXTENSIONS, done, requested_extension
from .identity import require_user

ACTIONS = {
    "publish": ("Publish", "Publish every release of the group at once: {releases}. If any of them cannot be "
                           "published, none is."),
    "cancel": ("Cancel", "Cancel the group and every session in it ({releases}): their files are discarded."),
    "extend": ("Extend", "Extend the group and its sessions ({releases}): they expire later (up to the "
                         "index's maximum lifetime)."),
}


def label(group: ReleaseGroup) -> str:
    return ", ".join(f"{s.name} {s.version}" for s in group.sessions) or "an empty release group"


def visible(request, who) -> list[ReleaseGroup]:
    """The live groups ``who`` may act on: every member's project (an empty one: its creator)."""
    shown = []
    for group_id in request.db.scalars(sa.select(ReleaseGroup.id).where(
            ReleaseGroup.status.in_(states.LIVE_PUBLISHING)).order_by(ReleaseGroup.expires_at)):
        try:
            shown.append(loading.group_by_id(request, who, group_id))
        except Forbidden:
            continue
    return shown


def load(request, *, lock: bool = False) -> ReleaseGroup:
    """The URL's group, for the signed-in user; one they may not act on is 404, as if absent."""
    who = require_user(request)
    try:
        return loading.group_by_id(request, who, parse_id(request.matchdict["group_id"]), lock=lock)
    except (Forbidden, NotFound):
        raise HTTPNotFound()


def _group_url(request, group: ReleaseGroup) -> str:
    return request.route_url("web.group", group_id=group.id)


def stage_commands(request, group: ReleaseGroup) -> dict[str, str]:
    stage = request.route_url("upload2.group.stage", token=group.token)
    requirements = " ".join(f"{s.name}=={s.version}" for s in group.sessions)
    return {"pip": f"pip install --index-url {stage} {requirements}",
            "uv": f"uv pip install --index-url {stage} {requirements}"}


@view_config(route_name="web.group", request_method="GET", renderer="group.html")
def group_page(request):
    group = load(request)
    live = group.status in states.LIVE_PUBLISHING
    return {"group": group, "label": label(group), "live": live,
            "commands": stage_commands(request, group) if live and group.sessions else None}


@view_config(route_name="web.group.action", request_method="GET", renderer="confirm.html")
def confirm_action(request):
    group = load(request)
    name, text = ACTIONS[request.matchdict["action"]]
    extensions = EXTENSIONS if request.matchdict["action"] == "extend" else None
    return {"back_url": _group_url(request, group), "back_label": "Release group", "label": name,
            "text": text.format(releases=label(group)), "action_url": request.current_route_url(),
            "extensions": extensions}


@view_config(route_name="web.group.action", request_method="POST", require_csrf=True)
def do_action(request):
    group = load(request, lock=True)
    action = request.matchdict["action"]
    if action == "publish":
        groups.publish(request, group)
        message = (f"The release group ({label(group)}) is being published."
                   if group.status == states.PublishingStatus.PROCESSING else f"Published {label(group)}.")
    elif action == "cancel":
        groups.cancel(request, group)
        message = f"Canceled the release group ({label(group)})."
    else:
        groups.extend(request, group, requested_extension(request))
        message = f"The release group now expires at {group.expires_at:%Y-%m-%d %H:%M} UTC."
    return done(request, message,
                request.route_url("web.sessions") if action == "cancel" else _group_url(request, group))
