"""Release groups, this index's extension of the 2.0 API (docs/api.md): thin views over
services/groups.py, found from the root's ``vnd-upload2-groups`` link."""

from __future__ import annotations

from ..services import diff, groups, loading, schedule
from ..states import PublishingStatus
from .registration import upload2_view
from .requests import json_body
from .review import preflight_answer
from .upload2 import META, POLL_SECONDS, respond, rfc3339


def group_links(request, group) -> dict:
    token = group.token
    links = {
        "group": request.route_url("upload2.group", token=token),
        "stage": request.route_url("upload2.group.stage", token=token),
        "sessions": request.route_url("upload2.group.sessions", token=token),
        "publish": request.route_url("upload2.group.publish", token=token),
        "extend": request.route_url("upload2.group.extend", token=token),
        "vnd-upload2-preflight": request.route_url("upload2.group.preflight", token=token),
        "vnd-upload2-diff": request.route_url("upload2.group.diff", token=token),
    }
    if group.publish_after is not None:
        links["vnd-upload2-unschedule"] = request.route_url("upload2.group.unschedule", token=token)
    return links


def group_body(request, group) -> dict:
    return {
        "meta": META,
        "links": group_links(request, group),
        "group-token": group.token,
        "expires-at": rfc3339(group.expires_at),
        "status": str(group.status),
        "sessions": [{
            "name": s.name, "version": s.version, "status": str(s.status), "session-token": s.token,
            "link": request.route_url("upload2.session", token=s.token),
            "remove": request.route_url("upload2.group.session", token=group.token, session_token=s.token),
        } for s in group.sessions],
        "notices": list(group.notices),
        **({schedule.PUBLISH_AFTER: rfc3339(group.publish_after)} if group.publish_after is not None else {}),
    }


def _status_url(request, group) -> str:
    return request.route_url("upload2.group", token=group.token)


@upload2_view(route_name="upload2.root", request_method="GET")
def root(request):
    """What this index offers beyond the PEP, for clients that look (no credentials needed)."""
    return respond({"meta": META, "links": {"vnd-upload2-groups": request.route_url("upload2.groups")}})


@upload2_view(route_name="upload2.groups", request_method="POST")
def create_group(request):
    who = loading.principal(request)
    body = json_body(request)
    group = groups.create(request, who, body.get("sessions"))
    return respond(group_body(request, group), 201, Location=_status_url(request, group))


@upload2_view(route_name="upload2.group", request_method="GET")
def group_status(request):
    group = loading.release_group(request)
    polling = {"Retry_After": POLL_SECONDS} if group.status == PublishingStatus.PROCESSING else {}
    return respond(group_body(request, group), **polling)


@upload2_view(route_name="upload2.group", request_method="DELETE")
def cancel_group(request):
    group = loading.release_group(request, lock=True)
    groups.cancel(request, group)
    return respond(group_body(request, group))


@upload2_view(route_name="upload2.group.sessions", request_method="POST")
def add_session(request):
    group = loading.release_group(request, lock=True)
    body = json_body(request)
    session = loading.session_by_token(request, group.host_principal, body.get("session-token"), lock=True)
    groups.add(request, group, session)
    return respond(group_body(request, group))


@upload2_view(route_name="upload2.group.session", request_method="DELETE")
def remove_session(request):
    group = loading.release_group(request, lock=True)
    groups.remove(request, group, request.matchdict["session_token"])
    return respond(group_body(request, group))


@upload2_view(route_name="upload2.group.publish", request_method="POST")
def publish_group(request):
    group = loading.release_group(request, lock=True)
    publish_after = schedule.requested_time(request, group, json_body(request))
    groups.publish(request, group, publish_after)
    location = _status_url(request, group)
    if group.status == PublishingStatus.PROCESSING:
        return respond(group_body(request, group), 202, Location=location, Retry_After=POLL_SECONDS)
    return respond(group_body(request, group), 201, Location=location)


@upload2_view(route_name="upload2.group.extend", request_method="POST")
def extend_group(request):
    group = loading.release_group(request, lock=True)
    groups.extend(request, group, json_body(request).get("extend-for"))
    return respond(group_body(request, group))


@upload2_view(route_name="upload2.group.unschedule", request_method="POST")
def unschedule_group(request):
    group = loading.release_group(request, lock=True)
    json_body(request)
    groups.unschedule(request, group)
    return respond(group_body(request, group))


@upload2_view(route_name="upload2.group.preflight", request_method="GET")
def preflight_group(request):
    group = loading.release_group(request)
    return preflight_answer(group.status, groups.problems(request, group))


@upload2_view(route_name="upload2.group.diff", request_method="GET")
def diff_group(request):
    """Each member's stage diff, as its session's own link answers it."""
    group = loading.release_group(request)
    return respond({"meta": META, "sessions": [
        {"name": s.name, "version": s.version, **diff.stage_diff(request, s, s.host_project)}
        for s in group.sessions]})
