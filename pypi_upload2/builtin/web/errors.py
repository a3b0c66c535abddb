"""Refusals on the web pages as readable pages. A service's refusal raises; pyramid_tm
then aborts the request's transaction (an exception view's response never commits), so a
refused action changes nothing. The page needs no database: the transaction may be broken."""

from __future__ import annotations

from pyramid.exceptions import BadCSRFToken
from pyramid.renderers import render_to_response

from ...problems import Problem


class WebRoute:
    """View predicate: the request matched one of the pages' routes (``web.*``)."""

    def __init__(self, value: bool, config):
        self.value = value

    def text(self):
        return f"upload2_web_route = {self.value}"

    phash = text

    def __call__(self, context, request):
        route = getattr(request, "matched_route", None)
        return (route is not None and route.name.startswith("web.")) == self.value


def _back(request) -> str:
    matched = request.matchdict or {}
    if matched.get("session_id") is not None:
        return request.route_url("web.session", session_id=matched["session_id"])
    if matched.get("group_id") is not None:
        return request.route_url("web.group", group_id=matched["group_id"])
    return request.route_url("web.home")


def refused(exc, request):
    response = render_to_response("error.html", {
        "title": exc.title, "detail": exc.detail,
        # The per-file messages say which file; the request-wide one repeats the detail.
        "errors": [e for e in exc.errors if e.get("message") != exc.detail], "back": _back(request),
    }, request=request)
    response.status = 404 if exc.status == 403 else exc.status
    return response


def bad_csrf(exc, request):
    response = render_to_response("error.html", {
        "title": "Form expired", "errors": [], "back": _back(request),
        "detail": "The form was not sent from this site's current page (or your sign-in ended). "
                  "Nothing was changed; go back, reload the page and try again.",
    }, request=request)
    response.status = 400
    return response


def includeme(config):
    config.add_view_predicate("upload2_web_route", WebRoute)
    config.add_exception_view(refused, context=Problem, upload2_web_route=True)
    config.add_exception_view(bad_csrf, context=BadCSRFToken, upload2_web_route=True)
