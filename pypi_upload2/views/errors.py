"""One place turns domain errors into RFC 9457 problem details for the 2.0 API."""

from __future__ import annotations

import json
import logging
import re

from pyramid.response import Response

from ..problems import InternalServerError, NotFound, Problem

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


def server_error(exc, request):
    log.exception("error in %s %s", request.method, request.path)
    return problem_response(InternalServerError("Internal server error",
                                                "The server failed to handle this request."))


def includeme(config):
    config.add_exception_view(problem_view, context=Problem)
    # Only URLs under the API root answer in problem+json; the host keeps its own pages.
    under_root = "^" + re.escape(config.registry["upload2.settings"].root_path)
    config.add_notfound_view(not_found, path_info=under_root)
    config.add_exception_view(server_error, context=Exception, path_info=under_root)
