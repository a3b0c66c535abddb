"""One place turns domain errors into RFC 9457 problem details for the 2.0 API."""

from __future__ import annotations

import json
import logging

from pyramid.exceptions import URLDecodeError
from pyramid.response import Response
from sqlalchemy.exc import DBAPIError

from ..problems import BadRequest, InternalServerError, NotFound, Problem, ServiceUnavailable

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem_response(problem: Problem) -> Response:
    response = Response(body=json.dumps(problem.body()).encode(), status=problem.status,
                        content_type=PROBLEM, charset=None)
    response.headers.update(problem.headers)
    return response


def problem_view(exc, request):
    return problem_response(exc)


def not_found(request):
    return problem_response(NotFound("Not found", f"There is no Upload 2.0 resource at {request.path}.",
                                     source="url"))


def bad_url(exc, request):
    return problem_response(BadRequest("Malformed URL", "The URL's path is not valid UTF-8.", source="url"))


class UnderRoot:
    """View predicate: the request's path lies under the API root. It reads the raw
    ``PATH_INFO``, so that it also holds for a path that does not decode (``path_info``
    decodes it, and would raise again inside the exception view)."""

    def __init__(self, root: str, config):
        self.root = root

    def text(self):
        return f"upload2_under_root = {self.root}"

    phash = text

    def __call__(self, context, request):
        return request.environ.get("PATH_INFO", "").startswith(self.root)


def server_error(exc, request):
    log.exception("error in %s %s", request.method, request.path)
    return problem_response(InternalServerError("Internal server error",
                                                "The server failed to handle this request."))


def database_error(exc, request):
    # A connection the database dropped (restarted, terminated) is transient: the
    # transaction rolled back with it, so the client may simply retry.
    if not exc.connection_invalidated:
        return server_error(exc, request)
    log.warning("database connection lost in %s %s: %s", request.method, request.path, exc.orig)
    return problem_response(ServiceUnavailable(
        "Database unavailable", "The server lost its database connection; nothing was changed. Retry the request.",
        headers={"Retry-After": "1"}))


def includeme(config):
    config.add_exception_view(problem_view, context=Problem)
    # Only URLs under the API root answer in problem+json; the host keeps its own pages.
    config.add_view_predicate("upload2_under_root", UnderRoot)
    root = config.registry["upload2.settings"].root_path
    config.add_notfound_view(not_found, upload2_under_root=root)
    config.add_exception_view(bad_url, context=URLDecodeError, upload2_under_root=root)
    config.add_exception_view(server_error, context=Exception, upload2_under_root=root)
    config.add_exception_view(database_error, context=DBAPIError, upload2_under_root=root)
