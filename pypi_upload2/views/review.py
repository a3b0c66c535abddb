"""Reviewing a stage before publishing it, as extensions of the 2.0 API (vendor-prefixed
links of the session): the preflight and the stage diff. Both only read."""

from __future__ import annotations

from ..problems import PublishWouldFail
from ..services import diff, loading, preflight
from .registration import upload2_view
from .upload2 import META, respond


def preflight_answer(status, errors: list[dict]):
    """200 with no errors, else the one problem listing them all (a session's or a group's)."""
    if errors:
        raise PublishWouldFail("Publish would fail", f"A publish now would fail with {len(errors)} problem(s).",
                               errors=errors)
    return respond({"meta": META, "status": str(status), "errors": []})


@upload2_view(route_name="upload2.preflight", request_method="GET")
def preflight_session(request):
    session = loading.publishing_session(request)
    return preflight_answer(session.status, preflight.problems(request, session, session.host_project))


@upload2_view(route_name="upload2.diff", request_method="GET")
def diff_session(request):
    session = loading.publishing_session(request)
    return respond({"meta": META, **diff.stage_diff(request, session, session.host_project)})
