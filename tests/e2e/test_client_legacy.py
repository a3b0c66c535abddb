"""Legacy fallback: against an index that offers only the legacy upload API, the client
says so and uploads each file with the legacy form, as twine would."""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.events import ContextFound
from pyramid.httpexceptions import HTTPNotFound

from pypi_upload2.problems import Problem
from pypi_upload2.views import legacy as legacy_views
from tests.conftest import build_sdist, build_wheel
from tests.e2e.test_client_upload import client_env, make_server, published, run_client, run_json  # noqa: F401

LEGACY_ONLY = "call:tests.e2e.test_client_legacy:legacy_only_app"


def _hide_upload2(event):
    route = event.request.matched_route
    if route is not None and route.name.startswith("upload2."):
        raise HTTPNotFound()


def legacy_only_app(global_config, **settings):
    """A host index without Upload 2.0: its own ``/legacy/`` route takes the plugin's legacy
    form upload (no 2.0 media-type dispatch there), and no Upload 2.0 route answers."""
    settings["upload2.legacy_path"] = ""
    settings.setdefault("tm.manager_hook", "pyramid_tm.explicit_manager")
    with Configurator(settings=settings) as config:
        config.add_route("host.legacy", "/legacy/")
        config.add_view(legacy_views.upload_file, route_name="host.legacy", request_method="POST")
        config.add_exception_view(legacy_views.legacy_problem, context=Problem, route_name="host.legacy")
        config.include("pypi_upload2")
        config.add_subscriber(_hide_upload2, ContextFound)
    return config.make_wsgi_app()


def test_without_upload2_the_client_falls_back_to_the_legacy_form(make_server, make_user, dist_dir, tmp_path):
    base = make_server(use=LEGACY_ONLY)
    paths = [build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0"),
             build_wheel(dist_dir, "bar", "2.0")]
    env = client_env(tmp_path, make_user("alice"))

    done = run_client(["upload", "--repository-url", f"{base}/legacy/", *paths], env)

    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"warning: {base}/legacy/ has no Upload 2.0 endpoint (session creation answered HTTP 415); "
            "uploading with the legacy API instead") in done.stdout
    for path in paths:
        assert f"{path.name}: published" in done.stdout.splitlines()
    assert published(base, "foo") == {p.name: p.read_bytes() for p in paths[:2]}
    assert published(base, "bar") == {paths[2].name: paths[2].read_bytes()}


def test_legacy_results_in_json_and_a_refused_file_stops_the_upload(make_server, make_user, dist_dir, tmp_path):
    base = make_server(use=LEGACY_ONLY)
    env = client_env(tmp_path, make_user("alice"))
    wheel = build_wheel(dist_dir, "foo", "1.0")
    assert run_json(["upload", "--repository-url", f"{base}/legacy/", wheel], env)["protocol"] == "legacy"

    # The same name with other bytes is refused; the file after it is not tried.
    other = dist_dir / "other"
    other.mkdir()
    changed = build_wheel(other, "foo", "1.0", module_source="VALUE = 2\n")
    later = build_wheel(dist_dir, "foo", "1.1")
    report = run_json(["upload", "--repository-url", f"{base}/legacy/", "--protocol", "legacy", changed, later],
                      env, expect=1)
    assert report["protocol"] == "legacy" and report["ok"] is False and report["sessions"] == []
    first, second = report["files"]
    assert first["filename"] == changed.name and first["status"] == "error"
    assert first["error"]["status"] in (400, 409) and first["error"]["title"]
    assert second == {**second, "filename": later.name, "status": "waiting"}
    assert published(base, "foo") == {wheel.name: wheel.read_bytes()}


def test_staging_needs_upload2(make_server, make_user, dist_dir, tmp_path):
    base = make_server(use=LEGACY_ONLY)
    done = run_client(["upload", "--repository-url", f"{base}/legacy/", "--stage", build_wheel(dist_dir, "foo", "1.0")],
                      client_env(tmp_path, make_user("alice")))
    assert done.returncode == 1
    assert "--stage and --test-install need one" in done.stdout
    assert published(base, "foo") == {}
