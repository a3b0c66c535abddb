"""The Upload 2.0 JSON API: thin views over services.publishing and services.files."""

from __future__ import annotations

import json

from pyramid.response import Response
from .registration import upload2_view

from ..problems import MethodNotAllowed
from ..services import files, loading, publication, publishing, schedule
from ..states import FileStatus, PublishingStatus
from .errors import problem_response
from .requests import CONTENT_TYPE, json_body
from .urls import file_url

META = {"api-version": "2.0"}
POLL_SECONDS = 1


def rfc3339(moment) -> str:
    # UTCDateTime hands back UTC whatever the connection's zone; the PEP wants "Z", whole seconds.
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def respond(body: dict, status: int = 200, **headers) -> Response:
    response = Response(body=json.dumps(body).encode(), status=status, content_type=CONTENT_TYPE, charset=None)
    response.headers.update({k.replace("_", "-"): str(v) for k, v in headers.items()})
    return response


def session_links(request, session) -> dict:
    token = session.token
    return {
        "stage": request.route_url("upload2.stage", token=token),
        "upload": request.route_url("upload2.upload", token=token),
        "session": request.route_url("upload2.session", token=token),
        "publish": request.route_url("upload2.publish", token=token),
        "extend": request.route_url("upload2.extend", token=token),
        # Extensions under the PEP's vendor prefix: clients that do not know them ignore them.
        "vnd-upload2-preflight": request.route_url("upload2.preflight", token=token),
        "vnd-upload2-diff": request.route_url("upload2.diff", token=token),
        # Where a group that joins it is created, and the group it belongs to, if any (views/groups.py).
        "vnd-upload2-groups": request.route_url("upload2.groups"),
        **({"vnd-upload2-group": request.route_url("upload2.group", token=session.group.token)}
           if session.group_id is not None else {}),
    }


def _scheduled(request, session) -> dict:
    """A scheduled publish's time and the link that undoes it, while it waits."""
    if session.publish_after is None:
        return {}
    return {schedule.PUBLISH_AFTER: rfc3339(session.publish_after),
            "links": {**session_links(request, session),
                      "vnd-upload2-unschedule": request.route_url("upload2.unschedule", token=session.token)}}


def session_body(request, session) -> dict:
    return {
        "meta": META,
        "links": session_links(request, session),
        "mechanisms": list(request.registry["upload2.mechanisms"]),
        "session-token": session.token,
        "expires-at": rfc3339(session.expires_at),
        "status": str(session.status),
        "files": {
            f.filename: {"status": str(f.status), "link": file_url(request, f), "notices": list(f.notices)}
            for f in publishing.live_files(session)
        },
        "notices": list(session.notices),
        **_scheduled(request, session),
    }


def file_body(request, file_session) -> dict:
    describe = request.registry["upload2.mechanisms"][file_session.mechanism]
    return {
        "meta": META,
        "links": {
            "file-upload-session": file_url(request, file_session),
            "complete": file_url(request, file_session, "upload2.file.complete"),
            "extend": file_url(request, file_session, "upload2.file.extend"),
        },
        "status": str(file_session.status),
        "expires-at": rfc3339(file_session.expires_at),
        "mechanism": describe(request, file_session),
        "notices": list(file_session.notices),
    }


@upload2_view(route_name="upload2.root", request_method="POST")
def create_session(request):
    who = loading.principal(request)
    body = json_body(request)
    session = publishing.create(request, who, body.get("name"), body.get("version"))
    location = request.route_url("upload2.session", token=session.token)
    return respond(session_body(request, session), 201, Location=location)


@upload2_view(route_name="upload2.session", request_method="GET")
def session_status(request):
    session = loading.publishing_session(request)
    # While a deferred publish runs, tell pollers when to look again.
    polling = {"Retry_After": POLL_SECONDS} if session.status == PublishingStatus.PROCESSING else {}
    return respond(session_body(request, session), **polling)


@upload2_view(route_name="upload2.session", request_method="DELETE")
def cancel_session(request):
    session = loading.publishing_session(request, lock=True)
    publishing.cancel(request, session)
    return respond(session_body(request, session))


@upload2_view(route_name="upload2.publish", request_method="POST")
def publish_session(request):
    session = loading.publishing_session(request, lock=True)
    publish_after = schedule.requested_time(request, session, json_body(request))
    publication.publish(request, session, session.host_project, publish_after=publish_after)
    location = request.route_url("upload2.session", token=session.token)
    if session.status == PublishingStatus.PROCESSING:
        # A task settles it (published or error); the client polls the session's status.
        return respond(session_body(request, session), 202, Location=location, Retry_After=POLL_SECONDS)
    return respond(session_body(request, session), 201, Location=location)


@upload2_view(route_name="upload2.unschedule", request_method="POST")
def unschedule_session(request):
    session = loading.publishing_session(request, lock=True)
    json_body(request)
    schedule.unschedule(request, session)
    return respond(session_body(request, session))


@upload2_view(route_name="upload2.extend", request_method="POST")
def extend_session(request):
    session = loading.publishing_session(request, lock=True)
    body = json_body(request)
    publishing.extend(request, session, body.get("extend-for"))
    return respond(session_body(request, session))


@upload2_view(route_name="upload2.upload", request_method="POST")
def create_file(request):
    session = loading.publishing_session(request, lock=True)
    body = json_body(request)
    file_session = files.create(request, session, body)
    return respond(file_body(request, file_session), 202, Retry_After=POLL_SECONDS,
                   Location=file_url(request, file_session))


@upload2_view(route_name="upload2.file", request_method="GET")
def file_status(request):
    file_session = loading.file_session(request)
    return respond(file_body(request, file_session), Retry_After=POLL_SECONDS)


@upload2_view(route_name="upload2.file", request_method="DELETE")
def delete_file(request):
    file_session = loading.file_session(request, lock="update", lock_session=True)
    files.delete(request, file_session)
    return Response(status=204, content_type=None)


@upload2_view(route_name="upload2.file.complete", request_method="POST")
def complete_file(request):
    file_session = loading.file_session(request, lock="update")
    json_body(request)
    files.complete(request, file_session)
    location = file_url(request, file_session)
    if file_session.status == FileStatus.ERROR:
        # The move to ``error`` is kept: the problem is rendered, not raised (which would abort).
        problem = files.failure(file_session)
        problem.headers["Location"] = location
        return problem_response(problem)
    if file_session.status == FileStatus.PROCESSING:
        # A task verifies it (completed or error); the client polls the file's status.
        return respond(file_body(request, file_session), 202, Location=location, Retry_After=POLL_SECONDS)
    return respond(file_body(request, file_session), 201, Location=location)


@upload2_view(route_name="upload2.file.extend", request_method="POST")
def extend_file(request):
    file_session = loading.file_session(request, lock="update")
    body = json_body(request)
    files.extend(request, file_session, body.get("extend-for"))
    return respond(file_body(request, file_session))


def method_not_allowed(request):
    """Every other method on a 2.0 route (views/__init__.py registers it for each)."""
    allow = ALLOWED_METHODS[request.matched_route.name]
    raise MethodNotAllowed("Method not allowed", f"{request.method} is not allowed here; use {allow}.",
                           source="method", headers={"Allow": allow})


ALLOWED_METHODS = {
    "upload2.root": "GET, HEAD, POST",
    "upload2.groups": "POST",
    "upload2.group": "GET, HEAD, DELETE",
    "upload2.group.session": "DELETE",
    "upload2.group.preflight": "GET, HEAD",
    "upload2.group.diff": "GET, HEAD",
    "upload2.session": "GET, HEAD, DELETE",
    "upload2.file": "GET, HEAD, DELETE",
    "upload2.file.bytes": "POST",
    "upload2.file.attestations": "POST",
    "upload2.preflight": "GET, HEAD",
    "upload2.diff": "GET, HEAD",
    **dict.fromkeys(["upload2.group.sessions", "upload2.group.publish", "upload2.group.extend",
                     "upload2.group.unschedule"], "POST"),
    **dict.fromkeys(["upload2.publish", "upload2.extend", "upload2.unschedule", "upload2.upload",
                     "upload2.file.complete", "upload2.file.extend"], "POST"),
}
