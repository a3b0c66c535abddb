"""The web pages in a real browser (Chromium through Playwright) against a real server."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import sqlalchemy as sa

from pypi_upload2.builtin import passwords
from pypi_upload2.builtin.models import User
from tests.conftest import build_wheel, free_port, wait_for
from tests.e2e.test_pip import Upload2, Venv
from tests.web.conftest import PASSWORD, SECRET

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")
SCREENSHOTS = pathlib.Path(os.environ.get("UPLOAD2_SCREENSHOTS",
                                          pathlib.Path(__file__).parents[2] / "var/test-artifacts/screenshots"))


@pytest.fixture
def web_server(tmp_path, database_url, storage_dir, dbsession):
    port = free_port()
    ini = tmp_path / "server.ini"
    ini.write_text(f"[app:main]\nuse = egg:pypi-upload2\nsqlalchemy.url = {database_url}\n"
                   f"upload2.storage = {storage_dir}\nupload2.web = true\nupload2.web.secret = {SECRET}\n\n"
                   f"[server:main]\nuse = egg:waitress#main\nlisten = 127.0.0.1:{port}\n")
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "pserve"), str(ini)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/simple/")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_a_maintainer_stages_tries_and_publishes_in_the_browser(web_server, browser, make_user, dbsession,
                                                                 dist_dir, tmp_path):
    api = Upload2(web_server, make_user("alice"))
    make_user("bob")
    for name in ("alice", "bob"):
        dbsession.scalar(sa.select(User).where(User.username == name)).password_hash = passwords.make_hash(PASSWORD)
    dbsession.commit()
    session = api.create_session("foo", "1.0")
    api.upload(session, build_wheel(dist_dir, "foo", "1.0"))

    page = browser.new_page()
    page.goto(web_server + "/account/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="foo 1.0").click()
    session_page = page.url
    shoot(page, "session")
    command = page.locator("#pip-command").inner_text()
    assert command == f"pip install --index-url {session['links']['stage']} foo==1.0"
    venv = Venv(tmp_path / "venv")
    venv.pip(*command.split()[1:], "--no-cache-dir")

    # Delete the file behind its confirmation page, then replace it through the API.
    page.get_by_role("link", name="Delete foo-1.0-py3-none-any.whl").click()
    page.locator("#confirm").get_by_role("button", name="Delete file").click()
    assert "Deleted foo-1.0-py3-none-any.whl." in page.content() and "No files yet." in page.content()
    (dist_dir / "again").mkdir()
    api.upload(session, build_wheel(dist_dir / "again", "foo", "1.0"))
    page.reload()
    assert "completed" in page.locator("table").inner_text()

    page.get_by_role("link", name="Publish…").click()
    shoot(page, "confirm")
    page.locator("#confirm").get_by_role("button", name="Publish").click()
    assert "Published foo 1.0." in page.content()
    page.goto(web_server + "/project/foo/")
    shoot(page, "project")
    assert "foo-1.0-py3-none-any.whl" in page.content() and "is staged" not in page.content()

    other = browser.new_page()
    other.goto(web_server + "/account/login/")
    other.get_by_label("Username").fill("bob")
    other.get_by_label("Password").fill(PASSWORD)
    other.get_by_role("button", name="Sign in").click()
    assert "no live publishing session" in other.content()
    assert other.goto(session_page).status == 404
    api.close()
