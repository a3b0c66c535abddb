"""Nothing staged shows in any of Warehouse's pages or APIs (the simple index, the JSON API,
project and release pages, RSS, XML-RPC); once published, all of it shows at once."""

from __future__ import annotations

import xmlrpc.client

import sqlalchemy as sa

from tests.conftest import Uploader, build_sdist, build_wheel
from tests.warehouse.conftest import ROOT, unique
from tests.warehouse.test_forklift import forklift_upload

SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def call(app, method: str, *params):
    """An XML-RPC call to Warehouse's /pypi endpoint, as xmlrpc.client.ServerProxy sends it."""
    response = app.post("/pypi", xmlrpc.client.dumps(params, method), headers={"Content-Type": "text/xml"})
    return xmlrpc.client.loads(response.body)[0][0]


def views(app, name: str, version: str, filenames: list[str], username: str) -> dict[str, bool]:
    """Whether each of Warehouse's views shows ``name`` ``version`` (or one of ``filenames``)."""
    simple = app.get(f"/simple/{name}/", status="*")
    simple_json = app.get(f"/simple/{name}/", headers=SIMPLE_JSON, status="*")
    project_json = app.get(f"/pypi/{name}/json", status="*")
    project_page = app.get(f"/project/{name}/", status="*")
    rss_project = app.get(f"/rss/project/{name}/releases.xml", status="*")
    changes = call(app, "changelog_since_serial", 0)
    return {
        "/simple/<name>/": simple.status_int == 200 and any(f in simple.text for f in filenames),
        "/simple/<name>/ (JSON)": simple_json.status_int == 200 and (
            version in simple_json.json.get("versions", [])
            or any(f["filename"] in filenames for f in simple_json.json["files"])),
        "/simple/": f'href="/simple/{name}/"' in app.get("/simple/").text,
        "/pypi/<name>/json": project_json.status_int == 200 and version in project_json.json["releases"],
        "/pypi/<name>/<version>/json": app.get(f"/pypi/{name}/{version}/json", status="*").status_int == 200,
        "/project/<name>/": project_page.status_int == 200 and f"/project/{name}/{version}/" in project_page.text,
        "/project/<name>/<version>/": app.get(f"/project/{name}/{version}/", status="*").status_int == 200,
        "/rss/updates.xml": f"{name} {version}" in app.get("/rss/updates.xml").text,
        "/rss/packages.xml": f"/project/{name}/" in app.get("/rss/packages.xml").text,
        "/rss/project/<name>/releases.xml": rss_project.status_int == 200 and f"<title>{version}</title>"
        in rss_project.text,
        "XML-RPC changelog_since_serial": any(e[0] == name and e[1] == version for e in changes),
        "XML-RPC list_packages_with_serial": name in call(app, "list_packages_with_serial"),
        "XML-RPC user_packages": [name in p for p in call(app, "user_packages", username)].count(True) > 0,
    }


def username(wh, user_id) -> str:
    from warehouse.accounts.models import User

    [(found,)] = wh.query(sa.select(User.username).where(User.id == user_id))
    return found


def test_a_staged_release_of_an_existing_project_shows_nowhere_until_published(owner, wh, dist_dir):
    name, user = owner.project, username(wh, owner.user_id)
    first = build_wheel(dist_dir, name, "1.0")
    forklift_upload(owner.app, owner.headers, first)
    # Every view shows what forklift published: the checks below do see a release.
    published = views(owner.app, name, "1.0", [first.name], user)
    assert all(published.values()), published

    paths = [build_wheel(dist_dir, name, "2.0"), build_sdist(dist_dir, name, "2.0")]
    session = owner.create_session(name, "2.0").json
    for path in paths:
        assert owner.upload(session, path).json["status"] == "completed"
    staged = views(owner.app, name, "2.0", [p.name for p in paths], user)
    # The project itself (published 1.0) stays listed; nothing of 2.0 does.
    project_level = {"/simple/", "/rss/packages.xml", "XML-RPC list_packages_with_serial", "XML-RPC user_packages"}
    assert {k for k, shown in staged.items() if shown} == project_level, staged

    owner.publish(session, status=201)
    assert all(views(owner.app, name, "2.0", [p.name for p in paths], user).values())


def test_a_staged_new_project_shows_nowhere_until_published(wh, wh_testapp, dist_dir):
    user_id = wh.user()
    creator = Uploader(wh_testapp, wh.token(user_id), root=ROOT)
    name, user = unique("newpkg"), username(wh, user_id)
    paths = [build_wheel(dist_dir, name, "0.1"), build_sdist(dist_dir, name, "0.1")]
    session = creator.create_session(name, "0.1").json
    for path in paths:
        creator.upload(session, path)
    staged = views(wh_testapp, name, "0.1", [p.name for p in paths], user)
    assert not any(staged.values()), staged
    # Not even the name: Warehouse has no project of it yet.
    assert wh_testapp.get(f"/simple/{name}/", status="*").status_int == 404
    assert wh_testapp.get(f"/project/{name}/", status="*").status_int == 404

    creator.publish(session, status=201)
    shown = views(wh_testapp, name, "0.1", [p.name for p in paths], user)
    assert all(shown.values()), shown
