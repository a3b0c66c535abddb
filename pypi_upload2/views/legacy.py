"""The legacy (1.0) upload API at ``upload2.legacy_path``, as twine and uv speak it.

The same route answers Upload 2.0 session creation when a client posts the 2.0 media type
there (the PEP's content negotiation); a host that owns its own legacy route keeps it and
adds only that with ``config.add_upload2_dispatch(route_name)``. ``GET`` answers a short
HTML page saying how to use the URL.
"""

from __future__ import annotations

import html
import re

from pyramid.config import not_
from pyramid.response import Response
from pyramid.settings import asbool

from ..problems import MethodNotAllowed, Problem
from ..services import legacy, loading
from .errors import problem_response
from .registration import view_options
from .requests import CONTENT_TYPE, check_content_length
from .upload2 import create_session, respond, session_body

ROUTE = "upload2.legacy"
# A header predicate: the 2.0 media type, any case, optionally with parameters.
UPLOAD2_REQUEST = rf"Content-Type:(?i){re.escape(CONTENT_TYPE)}\s*(;|$)"


def upload_file(request):
    who = loading.principal(request)
    check_content_length(request)
    upload = legacy.receive(request, who)
    if asbool(request.headers.get("X-Upload-Staged")) or asbool(upload.fields.get("staged")):
        session, created = legacy.stage(request, who, upload)
        location = request.route_url("upload2.session", token=session.token)
        return respond(session_body(request, session), 201 if created else 200, Location=location)
    legacy.publish(request, who, upload)
    return Response("OK\n", content_type="text/plain")


PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Upload endpoint</title></head>
<body>
<h1>Upload endpoint</h1>
<p>This URL takes uploads of Python distributions from twine, uv and every tool that speaks the
legacy upload API (<code>POST</code>, <code>multipart/form-data</code>), each file published at once.
Authenticate with an API token as the password of the user <code>__token__</code>:</p>
<pre>twine upload --repository-url {url} -u __token__ -p "$TOKEN" dist/*
uv publish --publish-url {url} --username __token__ --password "$TOKEN" dist/*</pre>
<p>A form field <code>staged=true</code> (or the header <code>X-Upload-Staged: true</code>) stages the
file in the release's publishing session instead; the answer links the session and its stage.</p>
<p>The Upload 2.0 API (<a href="https://peps.python.org/pep-0694/">PEP 694</a>) is at
<a href="{root}">{root}</a>; this URL answers it too, for requests of type <code>{media_type}</code>.</p>
</body>
</html>
"""


def usage_page(request):
    """A person who opens the URL in a browser learns what it is for and how to use it."""
    url, root = request.route_url(ROUTE), request.route_url("upload2.root")
    return Response(PAGE.format(url=html.escape(url), root=html.escape(root), media_type=CONTENT_TYPE),
                    content_type="text/html", charset="utf-8")


def method_not_allowed(request):
    raise MethodNotAllowed("Method not allowed", f"{request.method} is not allowed here; use GET or POST.",
                           source="method", headers={"Allow": "GET, HEAD, POST"})


def legacy_problem(exc, request):
    """Legacy clients show the status line, so its reason phrase carries the detail, as
    PyPI's does (twine's --skip-existing reads it); the body is the same problem+json."""
    response = problem_response(exc)
    reason = " ".join(exc.detail.split()).encode("latin-1", "replace").decode("latin-1")
    response.status = f"{exc.status} {reason}"
    return response


def add_upload2_dispatch(config, route_name: str) -> None:
    """Answer ``POST`` with the Upload 2.0 media type on ``route_name`` exactly as the 2.0
    root does; every other request to the route keeps going to its own views."""
    config.add_view(create_session, route_name=route_name, request_method="POST", header=UPLOAD2_REQUEST,
                    **view_options(config.registry, "POST"))


def includeme(config):
    config.add_directive("add_upload2_dispatch", add_upload2_dispatch)
    path = config.registry["upload2.settings"].legacy_path
    if not path:
        return
    config.add_route(ROUTE, path)
    config.add_view(upload_file, route_name=ROUTE, request_method="POST")
    config.add_view(usage_page, route_name=ROUTE, request_method="GET")  # and HEAD
    config.add_view(method_not_allowed, route_name=ROUTE)
    config.add_upload2_dispatch(ROUTE)
    config.add_exception_view(legacy_problem, context=Problem, route_name=ROUTE, header=not_(UPLOAD2_REQUEST))
