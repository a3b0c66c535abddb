"""The web pages through the full WSGI app: sign-in, sessions and their actions, public pages."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

import pytest
import time_machine

from tests.conftest import Uploader, build_wheel
from .conftest import sign_in


@pytest.fixture
def staged(webapp, make_user, set_password, dist_dir):
    """alice's foo 1.0, one completed wheel, staged through the API."""
    alice = Uploader(webapp, make_user("alice"))
    set_password("alice")
    session = alice.create_session().json
    alice.upload(session, build_wheel(dist_dir, "foo", "1.0"))
    return alice, session


def test_sign_in_shows_the_session_and_its_stage_commands(webapp, staged):
    _, session = staged
    sign_in(webapp, "alice").follow()
    listing = webapp.get("/manage/sessions/")
    page = listing.click("foo 1.0")
    assert "foo-1.0-py3-none-any.whl" in page.text and "completed" in page.text
    assert f"pip install --index-url {session['links']['stage']} foo==1.0" in page.text
    assert f"uv pip install --index-url {session['links']['stage']} foo==1.0" in page.text


def test_a_staged_release_is_not_public_until_published(webapp, staged):
    webapp.get("/project/foo/", status=404)
    sign_in(webapp, "alice")
    assert "is staged" in webapp.get("/project/foo/").text
    page = webapp.get("/manage/sessions/").click("foo 1.0").click("Publish…")
    page.forms["confirm"].submit(status=303).follow()
    webapp.get("/account/login/")  # still signed in
    public = webapp.__class__(webapp.app).get("/project/foo/")
    assert "foo-1.0-py3-none-any.whl" in public.text and "is staged" not in public.text



def test_wrong_password_and_lockout(webapp, staged):
    for _ in range(5):
        assert "Wrong username or password" in sign_in(webapp, "alice", "wrong password", status=400).text
    assert "locked" in sign_in(webapp, "alice", status=429).text


def test_unknown_user_is_refused_like_a_wrong_password(webapp):
    assert "Wrong username or password" in sign_in(webapp, "nobody", "whatever1", status=400).text


@pytest.mark.usefixtures("staged")
def test_a_post_without_csrf_token_changes_nothing(webapp):
    sign_in(webapp, "alice")
    url = webapp.get("/manage/sessions/").click("foo 1.0").request.path
    assert "Form expired" in webapp.post(url + "cancel/", status=400).text
    assert "open" in webapp.get(url).text


def test_another_user_sees_nothing(webapp, staged, make_user, set_password):
    make_user("bob")
    set_password("bob")
    sign_in(webapp, "bob")
    assert "foo" not in webapp.get("/manage/sessions/").text
    webapp.get("/manage/sessions/1/", status=404)
    assert "is staged" not in webapp.get("/project/foo/", status=404).text


def test_the_api_ignores_the_cookie_and_a_token_signs_in_no_page(webapp, staged):
    alice, session = staged
    sign_in(webapp, "alice")
    webapp.get(session["links"]["session"], status=401)
    fresh = webapp.__class__(webapp.app)
    assert fresh.get("/manage/sessions/", headers=alice.headers, status=303).location.startswith(
        "http://localhost/account/login/")


def test_a_refused_publish_is_a_readable_page_and_changes_nothing(webapp, staged, dist_dir):
    alice, session = staged
    # A second file, announced but never sent: the session cannot be published yet.
    alice.start_file(session, build_wheel(dist_dir, "foo", "1.0").rename(dist_dir / "foo-1.0-py2-none-any.whl"))
    sign_in(webapp, "alice")
    page = webapp.get("/manage/sessions/").click("foo 1.0").click("Publish…")
    refused = page.forms["confirm"].submit(status=409)
    assert "Files are not completed" in refused.text and "foo-1.0-py2-none-any.whl" in refused.text
    assert alice.get(session["links"]["session"]).json["status"] == "open"


def test_delete_a_file_behind_a_confirmation(webapp, staged):
    alice, session = staged
    sign_in(webapp, "alice")
    page = webapp.get("/manage/sessions/").click("foo 1.0")
    confirm = webapp.get(page.html.find("a", attrs={"aria-label": "Delete foo-1.0-py3-none-any.whl"})["href"])
    assert "Deleted foo-1.0-py3-none-any.whl" in confirm.forms["confirm"].submit(status=303).follow().text
    assert alice.get(session["links"]["session"]).json["files"] == {}


def test_user_passwd_reads_stdin_and_lifts_a_lockout(webapp, staged, database_url, tmp_path):
    ini = tmp_path / "cli.ini"
    ini.write_text(f"[app:main]\nuse = egg:pypi-upload2\nsqlalchemy.url = {database_url}\n")
    for _ in range(5):
        sign_in(webapp, "alice", "wrong password", status=400)
    sign_in(webapp, "alice", status=429)
    cli = [os.path.join(os.path.dirname(sys.executable), "pypi-upload2"), "-c", str(ini), "user", "passwd", "alice"]
    short = subprocess.run(cli, input="short\n", capture_output=True, text=True)
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
    done = subprocess.run(cli, input="a new password\n", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    sign_in(webapp, "alice", "a new password")
    assert "Your publishing sessions" in webapp.get("/manage/sessions/").text


def test_cancel_behind_a_confirmation_ends_the_session(webapp, staged):
    alice, session = staged
    sign_in(webapp, "alice")
    page = webapp.get("/manage/sessions/").click("foo 1.0").click("Cancel…")
    assert "Back, changing nothing" in page.text
    listing = page.forms["confirm"].submit(status=303).follow()
    assert "Canceled foo 1.0." in listing.text and "foo 1.0</a>" not in listing.text
    assert alice.get(session["links"]["session"]).json["status"] == "canceled"


def test_extend_behind_a_confirmation_moves_the_expiry(webapp, staged):
    alice, session = staged
    sign_in(webapp, "alice")
    form = webapp.get("/manage/sessions/").click("foo 1.0").click("Extend…").forms["confirm"]
    form["extend-for"] = str(30 * 86400)  # from now: 23 days past the default lifetime of 7
    page = form.submit(status=303).follow()
    expires_at = alice.get(session["links"]["session"]).json["expires-at"]
    when = datetime.datetime.fromisoformat(expires_at)
    assert when > datetime.datetime.fromisoformat(session["expires-at"]) + datetime.timedelta(days=22)
    assert f"foo 1.0 now expires at {when:%Y-%m-%d %H:%M} UTC." in page.text


def test_an_extension_the_api_refuses_is_refused_on_the_page_too(webapp, staged):
    alice, session = staged
    sign_in(webapp, "alice")
    form = webapp.get("/manage/sessions/").click("foo 1.0").click("Extend…").forms["confirm"]
    token = form["csrf_token"].value
    url = form.action
    refused = webapp.post(url, {"csrf_token": token, "extend-for": "-5"}, status=400)
    assert "extend-for" in refused.text
    assert alice.get(session["links"]["session"]).json["expires-at"] == session["expires-at"]


def test_sign_out_ends_the_signed_in_session(webapp, staged):
    sign_in(webapp, "alice")
    page = webapp.get("/manage/sessions/")
    page.forms[0].submit(status=303)
    assert webapp.get("/manage/sessions/", status=303).location.startswith("http://localhost/account/login/")


def test_a_browser_idle_past_the_timeout_is_signed_out(webapp, staged):
    start = datetime.datetime.now(datetime.UTC)
    with time_machine.travel(start, tick=False):
        sign_in(webapp, "alice")
    # A request within the idle timeout (an hour) keeps the browser signed in, and renews it.
    with time_machine.travel(start + datetime.timedelta(minutes=50), tick=False):
        webapp.get("/manage/sessions/", status=200)
    with time_machine.travel(start + datetime.timedelta(minutes=100), tick=False):
        webapp.get("/manage/sessions/", status=200)
    with time_machine.travel(start + datetime.timedelta(minutes=161), tick=False):
        assert webapp.get("/manage/sessions/", status=303).location.startswith("http://localhost/account/login/")
