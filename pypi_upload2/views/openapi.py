"""``<root>openapi.json``: the OpenAPI 3.1 description of the 2.0 API (pypi_upload2/openapi.json)."""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json

from pyramid.response import Response

from ..problems import MethodNotAllowed
from .registration import upload2_view

ROUTE = "upload2.openapi"


@functools.cache
def document() -> dict:
    """The document as shipped, read once; its paths are relative to the API root."""
    return json.loads(importlib.resources.files("pypi_upload2").joinpath("openapi.json").read_text("utf-8"))


@upload2_view(route_name=ROUTE, request_method="GET")
def openapi(request):
    served = copy.copy(document())
    # The server is the configured root, so the paths resolve wherever the host mounts the API.
    served["servers"] = [{"url": request.route_url("upload2.root").rstrip("/")}]
    return Response(body=json.dumps(served).encode(), content_type="application/json", charset=None)


@upload2_view(route_name=ROUTE)
def method_not_allowed(request):
    raise MethodNotAllowed("Method not allowed", f"{request.method} is not allowed here; use GET.",
                           source="method", headers={"Allow": "GET, HEAD"})


def includeme(config):
    config.add_route(ROUTE, config.registry["upload2.settings"].root_path + "openapi.json")
    config.scan(".openapi")
