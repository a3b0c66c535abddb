"""Every 2.0 response a test sees through WebTest is checked against the OpenAPI document
(pypi_upload2/openapi.json): its route, method and status are documented, its media type
and required headers are the documented ones, and its JSON body validates against the
documented schema. A response that does not fails the test that made the request."""

from __future__ import annotations

import json

import jsonschema
import referencing
import referencing.jsonschema
import webtest
from pyramid.interfaces import IRoutesMapper

from pypi_upload2.views.openapi import document

BASE = "urn:upload2:openapi"
METHODS = {"get", "head", "post", "put", "patch", "delete", "options", "trace"}
# Operations seen, (method, path, status), for the report at the end of the run.
seen: set[tuple[str, str, str]] = set()


def _registry() -> referencing.Registry:
    resource = referencing.Resource.from_contents(document(), default_specification=referencing.jsonschema.DRAFT202012)
    return referencing.Registry().with_resource(BASE, resource)


REGISTRY = _registry()


def _deref(node: dict) -> dict:
    """A ``#/components/...`` reference followed to what it names."""
    while "$ref" in node:
        target = document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def validate_body(pointer: str, body) -> None:
    schema = {"$ref": BASE + pointer}
    jsonschema.Draft202012Validator(schema, registry=REGISTRY).validate(body)


def _problem(response, method: str) -> None:
    assert response.content_type == "application/problem+json" or method == "HEAD", (
        f"{response.status} is not a problem: {response.content_type}")
    if method != "HEAD":
        validate_body(_pointer("components", "schemas", "Problem"), response.json)


def _documented_response(operation: dict, status: int) -> tuple[str, dict] | None:
    responses = operation["responses"]
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        if key in responses:
            return key, _deref(responses[key])
    return None


def _route(registry, path: str):
    """The route the app dispatched ``path`` to: the first that matches, as Pyramid's mapper
    picks it (the plugin's routes have no predicates)."""
    for route in registry.getUtility(IRoutesMapper).get_routes():
        if route.match(path) is not None:
            return route
    return None


def check(registry, response) -> None:
    """Check one response of the app whose registry is ``registry``."""
    settings = registry.get("upload2.settings")
    request = response.request
    method, status = request.method, response.status_int
    if settings is None or not request.environ["PATH_INFO"].startswith(settings.root_path):
        return
    try:
        path = request.path_info
    except UnicodeDecodeError:
        path = None
    route = None if path is None else _route(registry, path)
    if route is None or route.name == "upload2.legacy":
        if route is None:  # an unknown URL, or one that does not decode
            assert status in (400, 404), f"{method} {path}: {status} for a URL no route matches"
            _problem(response, method)
        return
    key = "/" + route.pattern.removeprefix(settings.root_path)
    item = document()["paths"].get(key)
    assert item is not None, f"route {route.name} ({route.pattern}) is not in the OpenAPI document"
    operation = item.get(method.lower())
    if operation is None:
        # A method the document does not list for the path: 405 with Allow, unless the path
        # says otherwise.
        other = item.get("x-other-methods", {}).get("status", 405)
        assert status == other, f"{method} {key}: {status}, not {other}"
        assert other != 405 or "Allow" in response.headers, f"{method} {key}: 405 without Allow"
        _problem(response, method)
        seen.add((method, key, str(other)))
        return
    documented = _documented_response(operation, status)
    assert documented is not None, f"{method} {key}: {status} is not documented ({response.body[:300]!r})"
    code, spec = documented
    seen.add((method, key, code))
    for name, header in spec.get("headers", {}).items():
        if _deref(header).get("required"):
            assert name in response.headers, f"{method} {key} {status}: no {name} header"
    content = spec.get("content")
    if method == "HEAD" or not content:
        assert method == "HEAD" or not response.body, f"{method} {key} {status}: an undocumented body"
        return
    media_type = response.content_type
    assert media_type in content, f"{method} {key} {status}: {media_type} is not one of {sorted(content)}"
    if "json" in media_type and content[media_type].get("schema"):
        # A shared response is reached through its own pointer.
        pointer = operation["responses"][code].get("$ref") or _pointer("paths", key, method.lower(), "responses", code)
        validate_body(pointer + _pointer("content", media_type, "schema")[1:], json.loads(response.body))


def install() -> None:
    """Wrap ``TestApp.do_request`` (every WebTest request goes through it) with ``check``."""
    do_request = webtest.TestApp.do_request

    def checked(self, req, status=None, expect_errors=None):
        response = do_request(self, req, status=status, expect_errors=expect_errors)
        registry = getattr(self.app, "registry", None)
        if registry is not None:
            check(registry, response)
        return response

    webtest.TestApp.do_request = checked


def unseen() -> list[tuple[str, str, str]]:
    """Documented (method, path, status) that no test saw."""
    return sorted((method.upper(), path, code)
                  for path, item in document()["paths"].items()
                  for method, operation in item.items() if method in METHODS
                  for code in operation["responses"]
                  if (method.upper(), path, code) not in seen)
