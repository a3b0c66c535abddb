"""Release groups on the web pages, through the full WSGI app: listed with the sessions, a
group's page with its stage commands, and publish, cancel and extend behind confirmations,
through the API's own authorization and service."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from pypi_upload2.models import ReleaseGroup
from tests.conftest import Uploader, build_wheel
from .conftest import sign_in


@pytest.fixture
def group(webapp, make_user, set_password, dist_dir):
    """alice's foo 1.0 and bar 1.0, staged through the API and joined in a release group."""
    alice = Uploader(webapp, make_user("alice"))
    set_password("alice")
    sessions = []
    for name in ("foo", "bar"):
        session = alice.create_session(name, "1.0").json
        alice.upload(session, build_wheel(dist_dir, name, "1.0"))
        sessions.append(session)
    body = alice.post(sessions[0]["links"]["vnd-upload2-groups"],
                      {"sessions": [s["session-token"] for s in sessions]}, status=201).json
    return body, sessions


def the_group_id(dbsession) -> int:
    group_id = dbsession.scalar(sa.select(ReleaseGroup.id))
    dbsession.commit()  # the test's transaction ends: the app's requests may write
    return group_id


def public(webapp, name):
    return webapp.__class__(webapp.app).get(f"/project/{name}/", expect_errors=True)


def test_the_group_is_listed_and_its_page_installs_both_from_its_stage(webapp, group):
    body, _ = group
    sign_in(webapp, "alice")
    page = webapp.get("/manage/sessions/").click("foo 1.0, bar 1.0")
    assert page.html.h1.text == "Release group"
    stage = body["links"]["stage"]
    assert page.html.find(id="pip-command").text == f"pip install --index-url {stage} foo==1.0 bar==1.0"
    assert page.html.find(id="uv-command").text == f"uv pip install --index-url {stage} foo==1.0 bar==1.0"
    assert [a.text for a in page.html.select("table a")] == ["foo 1.0", "bar 1.0"]
    banner = page.click("foo 1.0").html.select_one(".banner")
    assert banner.get_text(" ", strip=True).startswith("Part of a release group")
    assert banner.a["href"] == page.request.url


def test_a_member_is_not_published_alone_and_the_group_publishes_both(webapp, group):
    sign_in(webapp, "alice")
    member = webapp.get("/manage/sessions/").click("foo 1.0", index=0)
    refused = member.click("Publish…").forms["confirm"].submit(status=409)
    assert "group" in refused.text.lower()
    assert public(webapp, "foo").status_int == 404

    page = webapp.get("/manage/sessions/").click("foo 1.0, bar 1.0")
    confirm = page.click("Publish all…")
    assert "If any of them cannot be published, none is" in confirm.text
    done = confirm.forms["confirm"].submit(status=303).follow()
    assert "Published foo 1.0, bar 1.0." in done.text
    for name in ("foo", "bar"):
        assert f"{name}-1.0-py3-none-any.whl" in public(webapp, name).text


def test_extend_then_cancel_the_group_from_its_page(webapp, group):
    body, _ = group
    sign_in(webapp, "alice")
    page = webapp.get("/manage/sessions/").click("foo 1.0, bar 1.0")
    form = page.click("Extend…").forms["confirm"]
    form["extend-for"] = str(7 * 86400)
    assert "now expires at" in form.submit(status=303).follow().text

    page.click("Cancel…").forms["confirm"].submit(status=303).follow()
    assert webapp.get(body["links"]["stage"], expect_errors=True).status_int == 404
    listing = webapp.get("/manage/sessions/")
    assert "Release groups" not in listing.text and "foo 1.0" not in listing.text


def test_another_user_sees_nothing_of_the_group(webapp, group, make_user, set_password, dbsession):
    group_id = the_group_id(dbsession)
    make_user("bob")
    set_password("bob")
    sign_in(webapp, "bob")
    assert "Release groups" not in webapp.get("/manage/sessions/").text
    # As if it did not exist: its releases are not told either.
    assert "foo" not in webapp.get(f"/manage/groups/{group_id}/", status=404).text
    confirm = webapp.get(f"/manage/groups/{group_id}/publish/", status=404)
    csrf = webapp.get("/manage/sessions/").html.find("input", {"name": "csrf_token"})["value"]  # sign-out's form
    webapp.post(f"/manage/groups/{group_id}/publish/", {"csrf_token": csrf}, status=404)
    assert confirm.status_int == 404 and public(webapp, "foo").status_int == 404


def test_a_post_without_its_csrf_token_changes_nothing(webapp, group, dbsession):
    group_id = the_group_id(dbsession)
    sign_in(webapp, "alice")
    webapp.post(f"/manage/groups/{group_id}/cancel/", status=400)
    assert "foo 1.0, bar 1.0" in webapp.get("/manage/sessions/").text
