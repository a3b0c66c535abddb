"""The OpenAPI document: valid, served at ``<root>openapi.json`` for the configured root, and
covering every route the app registers under the root. That each response matches it is
checked on every WebTest request of the suite (tests/openapi.py)."""

from __future__ import annotations

import json

import jsonschema
import pytest
import webtest
from openapi_spec_validator import validate
from pyramid.interfaces import IRoutesMapper

from pypi_upload2 import main
from pypi_upload2.views.openapi import document
from tests import openapi
from tests.conftest import CT, META, basic, build_wheel


def test_the_document_is_valid_openapi_3_1():
    validate(document())
    assert document()["openapi"].startswith("3.1.")


def test_served_without_credentials_with_the_root_as_server(testapp):
    response = testapp.get("/2.0/openapi.json", status=200)
    assert response.content_type == "application/json"
    served = response.json
    assert served["servers"] == [{"url": "http://localhost/2.0"}]
    assert served["paths"] == document()["paths"]
    validate(served)


def test_the_server_follows_a_configured_root(settings, dbsession, make_user):
    app = webtest.TestApp(main({}, **settings, **{"upload2.root_path": "/upload/v2/"}))
    try:
        server = app.get("/upload/v2/openapi.json").json["servers"][0]["url"]
        assert server == "http://localhost/upload/v2"
        app.get("/2.0/openapi.json", status=404)
        # A documented path under the served server is the live operation.
        created = app.post(server + "/", json.dumps({"meta": META, "name": "foo", "version": "1.0"}),
                           headers={**basic(make_user("alice")), "Content-Type": CT}, status=201)
        assert created.json["links"]["session"].startswith(server + "/sessions/")
    finally:
        app.app.registry["upload2.engine"].dispose()


def test_every_route_under_the_root_is_documented_and_nothing_else(wsgi_app):
    root = wsgi_app.registry["upload2.settings"].root_path
    routes = {"/" + route.pattern.removeprefix(root)
              for route in wsgi_app.registry.getUtility(IRoutesMapper).get_routes()
              if route.pattern.startswith(root)}
    assert routes == set(document()["paths"])


def test_another_method_is_405_with_allow(testapp):
    response = testapp.post("/2.0/openapi.json", status=405)
    assert response.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("status", [418, 201])
def test_the_check_refuses_an_undocumented_status(testapp, wsgi_app, status):
    response = testapp.get("/2.0/openapi.json")
    response.status_int = status
    with pytest.raises(AssertionError, match="not documented"):
        openapi.check(wsgi_app.registry, response)


def test_the_check_refuses_a_body_off_its_schema(alice, wsgi_app):
    response = alice.create_session()
    response.body = json.dumps({**response.json, "status": "resting"}).encode()
    with pytest.raises(jsonschema.ValidationError, match="resting"):
        openapi.check(wsgi_app.registry, response)


def test_head_and_resumable_answers_are_documented(alice, bob, testapp, dist_dir):
    # Answers the rest of the suite does not give; each is checked against the document.
    session = alice.create_session().json
    wheel = build_wheel(dist_dir, "foo", "1.0")
    file = alice.start_file(session, wheel, mechanism="vnd-upload2-resumable-v1").json
    status_urls = [session["links"]["session"], file["links"]["file-upload-session"]]
    for url in status_urls:
        testapp.head(url, headers=alice.headers, status=200)
        testapp.head(url, status=401)
        testapp.head(url, headers=bob.headers, status=403)
        testapp.head(url.replace(session["session-token"], "x" * 43), headers=alice.headers, status=404)
    upload = file["mechanism"]["file_url"]
    testapp.options(upload, status=401)
    testapp.options(upload, headers=bob.headers, status=403)
    testapp.patch(upload, b"x", status=401, headers={"Upload-Offset": "0", "Upload-Complete": "?0"})
    testapp.delete(upload, headers=bob.headers, status=403)
    testapp.delete(upload, headers=alice.headers, status=204)
    testapp.delete(upload, headers=alice.headers, status=404)
    assert ("HEAD", "/sessions/{token}/", "403") in openapi.seen
