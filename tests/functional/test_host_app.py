"""pypi_upload2 as a plugin: a host Pyramid app includes it and keeps its own routes and pages."""

from __future__ import annotations

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.exceptions import URLDecodeError
from pyramid.response import Response

from tests.conftest import Uploader, build_sdist, build_wheel

PROBLEM = "application/problem+json"


def hello(request):
    return Response(f"hello from the host, explicit tm: {request.tm.explicit}")


def boom(request):
    raise LookupError("the host's own failure")


def host_not_found(request):
    return Response("the host's own 404 page", status=404, content_type="text/plain")


@pytest.fixture
def make_host(settings, dbsession):
    """Build a host app with its own routes and settings; ``hook`` customizes its Configurator."""
    apps = []

    def make(*, include_tm_first=False, extra=None, hook=None):
        host_settings = {**settings, "tm.manager_hook": "pyramid_tm.explicit_manager",
                         "host.greeting": "hi", **(extra or {})}
        with Configurator(settings=host_settings) as config:
            if include_tm_first:
                config.include("pyramid_tm")
            config.add_route("hello", "/hello")
            config.add_view(hello, route_name="hello")
            config.add_route("boom", "/boom")
            config.add_view(boom, route_name="boom")
            if hook:
                hook(config)
            config.include("pypi_upload2")
        app = config.make_wsgi_app()
        apps.append(app)
        return webtest.TestApp(app)

    yield make
    for app in apps:
        app.registry["upload2.engine"].dispose()


def run_flow(host, token, dist_dir, root):
    """Stage two files, check the stage, publish, check the public index; through the host."""
    uploader = Uploader(host, token, root=root)
    session = uploader.create_session("foo", "1.0").json
    assert session["links"]["session"].startswith(f"http://localhost{root}sessions/")
    paths = [build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0")]
    for path in paths:
        assert uploader.upload(session, path).json["status"] == "completed"
    stage = host.get(session["links"]["stage"] + "foo/")
    assert sorted(a.text for a in stage.html.find_all("a")) == sorted(p.name for p in paths)
    host.get("/simple/foo/", status=404)

    assert uploader.publish(session).json["status"] == "published"
    page = host.get("/simple/foo/")
    links = {a.text: a["href"].partition("#")[0] for a in page.html.find_all("a")}
    for path in paths:
        assert host.get(links[path.name]).body == path.read_bytes()
    assert [a.text for a in host.get("/simple/").html.find_all("a")] == ["foo"]


@pytest.mark.parametrize("include_tm_first", [False, True], ids=["plugin-includes-tm", "host-included-tm"])
def test_full_flow_through_a_host_app(make_host, make_user, dist_dir, include_tm_first):
    host = make_host(include_tm_first=include_tm_first)
    run_flow(host, make_user("alice"), dist_dir, "/2.0/")

    # The host's own route, with the host's choice of transaction manager.
    assert host.get("/hello").text == "hello from the host, explicit tm: True"
    assert host.app.registry.settings["host.greeting"] == "hi"
    # The plugin answers in problem+json only under its own root; the host keeps its 404 pages.
    outside = host.get("/no/such/page", status=404)
    assert outside.content_type != PROBLEM
    inside = host.get("/2.0/no/such/resource", status=404)
    assert inside.content_type == PROBLEM
    assert inside.json["status"] == 404
    # Nor does the plugin swallow the host's own exceptions.
    with pytest.raises(LookupError):
        host.get("/boom")


def test_host_chooses_the_api_root_and_keeps_its_own_not_found_view(make_host, make_user, dist_dir):
    host = make_host(extra={"upload2.root_path": "/upload/v2/"},
                     hook=lambda config: config.add_notfound_view(host_not_found))
    run_flow(host, make_user("alice"), dist_dir, "/upload/v2/")

    for outside in ("/2.0/", "/nothing-here"):
        response = host.get(outside, status=404)
        assert response.text == "the host's own 404 page"
    host.post("/2.0/", status=404)
    inside = host.get("/upload/v2/nothing-here", status=404)
    assert inside.content_type == PROBLEM
    assert host.get("/hello").status_int == 200
    assert host.get("/upload/v2/%ff", status=400).content_type == PROBLEM
    with pytest.raises(URLDecodeError):  # the host's to handle, as any other error of its own
        host.get("/hello/%ff")


def test_host_may_turn_off_the_public_index(make_host, make_user, dist_dir):
    """A host that has its own simple index keeps /simple/ to itself; the stage still works."""
    def own_index(config):
        config.add_route("host.simple", "/simple/")
        config.add_view(lambda request: Response("the host's index"), route_name="host.simple")

    host = make_host(extra={"upload2.simple_index": "false"}, hook=own_index)
    uploader = Uploader(host, make_user("alice"))
    session = uploader.create_session("foo", "1.0").json
    wheel = build_wheel(dist_dir, "foo", "1.0")
    uploader.upload(session, wheel)
    stage = host.get(session["links"]["stage"] + "foo/")
    assert [a.text for a in stage.html.find_all("a")] == [wheel.name]
    uploader.publish(session)
    assert host.get("/simple/").text == "the host's index"
    host.get("/simple/foo/", status=404)
