"""The ``pypi-upload2`` console script, run as a real process against a real ini file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import webtest
from pyramid.paster import get_app

from tests.conftest import Uploader, build_wheel

SCRIPT = os.path.join(os.path.dirname(sys.executable), "pypi-upload2")


@pytest.fixture
def elsewhere(tmp_path):
    """A working directory unrelated to the ini file's folder."""
    path = tmp_path / "elsewhere" / "deeper"
    path.mkdir(parents=True)
    return path


def write_ini(folder, url: str):
    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / "app.ini"
    ini.write_text(f"[app:main]\nuse = egg:pypi-upload2\nsqlalchemy.url = {url}\nupload2.storage = var/files\n")
    return ini


@pytest.fixture
def ini(tmp_path, database_url, is_postgresql, dbsession):
    """An ini with relative paths: its own SQLite file beside it, or on a PostgreSQL run the suite's
    database (emptied after the test by ``dbsession``)."""
    ini = write_ini(tmp_path / "site", database_url if is_postgresql else "sqlite:///var/x.sqlite")
    cli(tmp_path, ini, "db", "upgrade")
    return ini


def cli(cwd, ini, *args, expect=0):
    """Run the console script from ``cwd`` with ``ini`` given relative to it."""
    config = os.path.relpath(ini, cwd)
    result = subprocess.run([SCRIPT, "-c", config, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == expect, result.stderr
    return result


def add_user(cwd, ini, name) -> str:
    lines = cli(cwd, ini, "user", "add", name).stdout.strip().splitlines()
    assert lines[-1].startswith("pypi-upload2-")
    return lines[-1]


@pytest.fixture
def app(ini):
    """The app as a server would load it: via PasteDeploy, so ``here`` is the ini's folder."""
    wsgi = get_app(str(ini))
    yield webtest.TestApp(wsgi)
    wsgi.registry["upload2.engine"].dispose()


def test_db_upgrade_creates_the_database_next_to_the_ini(tmp_path, elsewhere):
    ini = write_ini(tmp_path / "site", "sqlite:///var/x.sqlite")
    result = cli(elsewhere, ini, "db", "upgrade")
    assert "up to date" in result.stdout
    assert (ini.parent / "var" / "x.sqlite").is_file()
    assert not (elsewhere / "var").exists()
    # Upgrading again is harmless.
    cli(elsewhere, ini, "db", "upgrade")


def rows(result) -> list[dict[str, str]]:
    """A listing's tab-separated lines (its output when piped) as dicts by column."""
    header, *lines = result.stdout.rstrip("\n").split("\n")
    return [dict(zip(header.split("\t"), line.split("\t"))) for line in lines]


def test_user_add_prints_a_working_token_last(ini, elsewhere, app):
    first = cli(elsewhere, ini, "user", "add", "alice").stdout.strip().splitlines()
    assert first[0] == "created user alice"
    token = first[-1]
    session = Uploader(app, token).create_session("foo", "1.0").json
    Uploader(app, token).delete(session["links"]["session"])
    Uploader(app, token[:-1] + ("A" if token[-1] != "A" else "B")).create_session(status=401)
    # Adding the user again makes no second token behind the operator's back.
    again = cli(elsewhere, ini, "user", "add", "alice", expect=1)
    assert "user 'alice' exists; `token add alice` makes another token" in again.stderr
    assert again.stdout == ""
    assert len(rows(cli(elsewhere, ini, "token", "list", "alice"))) == 1


def test_tokens_are_added_listed_and_revoked(ini, elsewhere, app):
    first = add_user(elsewhere, ini, "alice")
    second = cli(elsewhere, ini, "token", "add", "alice", "--description", "CI of foo").stdout.strip()
    assert second.startswith("pypi-upload2-") and second != first
    listed = rows(cli(elsewhere, ini, "token", "list"))
    assert [(t["user"], t["description"], t["last used"], t["expires"]) for t in listed] == [
        ("alice", "", "never", "never"), ("alice", "CI of foo", "never", "never")]
    assert first not in cli(elsewhere, ini, "token", "list").stdout  # never a secret

    # Using a token stamps it (after the request, to the minute).
    Uploader(app, second).create_session("foo", "1.0")
    listed = {t["description"]: t for t in rows(cli(elsewhere, ini, "token", "list", "alice"))}
    assert listed["CI of foo"]["last used"].endswith(" UTC") and listed[""]["last used"] == "never"

    # A leaked token: revoke it by id; the other keeps working.
    revoked = listed["CI of foo"]["id"]
    assert "it no longer authenticates" in cli(elsewhere, ini, "token", "revoke", revoked).stdout
    response = Uploader(app, second).create_session("foo", "2.0", status=401)
    assert "not valid (or was revoked" in response.json["detail"]
    Uploader(app, first).create_session("bar", "1.0")
    assert cli(elsewhere, ini, "token", "revoke", revoked, expect=1).stderr.strip() == (
        f"pypi-upload2: no such token: {revoked}")
    assert cli(elsewhere, ini, "token", "add", "nobody", expect=1).stderr.strip() == (
        "pypi-upload2: no such user: 'nobody'")


def test_an_expired_token_stops_working(ini, elsewhere, app):
    import datetime

    import sqlalchemy as sa

    from pypi_upload2.builtin.models import ApiToken

    token = cli(elsewhere, ini, "user", "add", "alice", "--expires-in", "30").stdout.strip().splitlines()[-1]
    [listed] = rows(cli(elsewhere, ini, "token", "list"))
    expires = datetime.datetime.strptime(listed["expires"], "%Y-%m-%d %H:%M UTC").replace(tzinfo=datetime.UTC)
    assert abs(expires - datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)) < datetime.timedelta(
        minutes=5)
    Uploader(app, token).create_session("foo", "1.0")
    # Thirty days later:
    with app.app.registry["upload2.engine"].begin() as conn:
        conn.execute(sa.update(ApiToken).values(
            expires_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)))
    response = Uploader(app, token).create_session("foo", "2.0", status=401)
    assert "has expired" in response.json["detail"]
    assert "positive" in cli(elsewhere, ini, "token", "add", "alice", "--expires-in", "0", expect=1).stderr


def test_users_projects_and_sessions_are_listed(ini, elsewhere, app, dist_dir):
    alice = Uploader(app, add_user(elsewhere, ini, "alice"))
    add_user(elsewhere, ini, "bob")
    published = alice.create_session("Foo", "1.0").json
    alice.upload(published, build_wheel(dist_dir, "foo", "1.0"))
    alice.publish(published)
    staged = alice.create_session("foo", "2.0").json
    alice.create_session("bar", "0.1")
    cli(elsewhere, ini, "project", "grant", "bob", "foo")

    assert [(u["user"], u["tokens"], u["projects"]) for u in rows(cli(elsewhere, ini, "user", "list"))] == [
        ("alice", "1", "1"), ("bob", "1", "1")]
    # Only registered projects (bar is a reserved name of a live session, not a project).
    assert [(p["project"], p["releases"], p["may upload"]) for p in rows(cli(elsewhere, ini, "project", "list"))] == [
        ("Foo", "1", "alice, bob")]
    live = rows(cli(elsewhere, ini, "session", "list"))
    assert [(s["project"], s["version"], s["status"], s["created by"], s["files"]) for s in live] == [
        ("Foo", "2.0", "open", "alice", "0"), ("bar", "0.1", "open", "alice", "0")]
    assert all(s["expires"].endswith(" UTC") for s in live)
    every = rows(cli(elsewhere, ini, "session", "list", "--all"))
    assert [(s["project"], s["version"], s["status"]) for s in every] == [
        ("Foo", "1.0", "published"), ("Foo", "2.0", "open"), ("bar", "0.1", "open")]
    alice.delete(staged["links"]["session"])
    assert [s["project"] for s in rows(cli(elsewhere, ini, "session", "list"))] == ["bar"]


def test_storage_resolves_against_the_ini_folder(ini, elsewhere, app, dist_dir, monkeypatch):
    monkeypatch.chdir(elsewhere)  # the app must not care where it is started from
    alice = Uploader(app, add_user(elsewhere, ini, "alice"))
    session = alice.create_session("foo", "1.0").json
    alice.upload(session, build_wheel(dist_dir, "foo", "1.0"))
    stored = [p for p in (ini.parent / "var" / "files").rglob("*") if p.is_file()]
    assert stored and all(p.parent.parent.name == "sessions" for p in stored)
    assert not (elsewhere / "var").exists()


def test_project_grant_and_revoke(ini, elsewhere, app, dist_dir):
    alice = Uploader(app, add_user(elsewhere, ini, "alice"))
    bob = Uploader(app, add_user(elsewhere, ini, "bob"))
    session = alice.create_session("Foo", "1.0").json
    alice.upload(session, build_wheel(dist_dir, "foo", "1.0"))
    alice.publish(session)
    bob.create_session("foo", "2.0", status=403)

    assert "bob may now upload to Foo" in cli(elsewhere, ini, "project", "grant", "bob", "FOO").stdout
    assert "already" in cli(elsewhere, ini, "project", "grant", "bob", "foo").stdout
    bob_session = bob.create_session("foo", "2.0").json
    bob.delete(bob_session["links"]["session"])

    assert "no longer" in cli(elsewhere, ini, "project", "revoke", "bob", "foo").stdout
    bob.create_session("foo", "2.0", status=403)
    failure = cli(elsewhere, ini, "project", "revoke", "bob", "foo", expect=1)
    assert failure.stderr.strip() == "pypi-upload2: bob has no role on Foo"


def test_project_commands_refuse_missing_users_and_projects(ini, elsewhere, app):
    alice = Uploader(app, add_user(elsewhere, ini, "alice"))
    alice.create_session("reserved", "1.0")  # a reservation is not a project yet
    cases = [
        (("grant", "nobody", "reserved"), "pypi-upload2: no such user: 'nobody'"),
        (("grant", "alice", "missing"), "pypi-upload2: no such project: 'missing'"),
        (("grant", "alice", "reserved"), "pypi-upload2: no such project: 'reserved'"),
        (("revoke", "alice", "missing"), "pypi-upload2: no such project: 'missing'"),
    ]
    for args, message in cases:
        result = cli(elsewhere, ini, "project", *args, expect=1)
        assert result.stderr.strip() == message
        assert result.stdout == ""


@pytest.mark.parametrize("content, message", [
    (None, "config file not found"),
    ("not an ini file\n", "cannot load"),
    ("[server:main]\nuse = egg:waitress#main\n", "cannot load"),
    ("[app:main]\nuse = egg:pypi-upload2\n", "sets no sqlalchemy.url"),
])
def test_unusable_config_files_fail_clearly(tmp_path, elsewhere, content, message):
    ini = tmp_path / "site" / "app.ini"
    if content is not None:
        ini.parent.mkdir()
        ini.write_text(content)
    result = cli(elsewhere, ini, "user", "add", "alice", expect=2)
    assert result.stderr.startswith("pypi-upload2: ") and message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_commands_before_db_upgrade_fail_clearly(tmp_path, elsewhere):
    ini = write_ini(tmp_path / "site", "sqlite:///var/new.sqlite")
    result = cli(elsewhere, ini, "user", "add", "alice", expect=1)
    assert result.stderr.startswith("pypi-upload2: database error:")
    assert "Traceback" not in result.stderr


def test_db_current_and_downgrade_go_back_one_release(tmp_path, elsewhere):
    ini = write_ini(tmp_path / "site", "sqlite:///var/x.sqlite")
    assert cli(elsewhere, ini, "db", "current").stdout == "no migrations applied\n"
    cli(elsewhere, ini, "db", "upgrade")
    head = cli(elsewhere, ini, "db", "current").stdout
    assert head and all(line.endswith(" (head)") for line in head.splitlines())  # one line per branch
    core = next(line for line in head.splitlines() if line.startswith("c"))

    assert cli(elsewhere, ini, "db", "downgrade", "index@0004").stdout == f"0004\n{core}\n"
    # 0004 moved the data into new tables: only the backup taken before it goes further back.
    refused = cli(elsewhere, ini, "db", "downgrade", "index@0003", expect=1)
    assert "restore the database backup" in refused.stderr
    assert "Can't locate revision" in cli(elsewhere, ini, "db", "downgrade", "0099", expect=1).stderr
    assert cli(elsewhere, ini, "db", "current").stdout == f"0004\n{core}\n"
    cli(elsewhere, ini, "db", "upgrade")
    assert cli(elsewhere, ini, "db", "current").stdout == head


def test_a_stage_only_token_stages_but_does_not_publish(ini, elsewhere, app, dist_dir):
    maintainer = add_user(elsewhere, ini, "alice")
    ci = cli(elsewhere, ini, "token", "add", "alice", "--stage-only", "--description", "CI").stdout.strip()
    assert [(t["description"], t["may"]) for t in rows(cli(elsewhere, ini, "token", "list"))] == [
        ("", "publish"), ("CI", "stage")]
    session = Uploader(app, ci).create_session("foo", "1.0").json
    Uploader(app, ci).upload(session, build_wheel(dist_dir, "foo", "1.0"))
    assert Uploader(app, ci).publish(session, status=403).json["title"] == "Publish not allowed"
    Uploader(app, maintainer).publish(session)
    stage_only_user = cli(elsewhere, ini, "user", "add", "robot", "--stage-only").stdout.strip().splitlines()[-1]
    assert rows(cli(elsewhere, ini, "token", "list", "robot"))[0]["may"] == "stage"
    assert stage_only_user.startswith("pypi-upload2-")


def test_trusted_publishers_are_added_listed_and_removed(ini, elsewhere, app, dist_dir):
    alice = add_user(elsewhere, ini, "alice")
    session = Uploader(app, alice).create_session("foo", "1.0").json
    Uploader(app, alice).upload(session, build_wheel(dist_dir, "foo", "1.0"))
    Uploader(app, alice).publish(session)
    out = cli(elsewhere, ini, "publisher", "add", "foo", "github", "octo/foo", "release.yml",
              "--environment", "pypi").stdout
    assert out.startswith("added trusted publisher 1 of foo: github octo/foo, workflow release.yml, environment pypi")
    assert "needs --user" in cli(elsewhere, ini, "publisher", "add", "New.Thing", "gitlab", "g/p", ".gitlab-ci.yml",
                                 expect=1).stderr
    out = cli(elsewhere, ini, "publisher", "add", "New.Thing", "gitlab", "g/sub/p", "ci/release.yml",
              "--user", "alice").stdout
    assert out.startswith("added pending publisher (may register the name) 2 of new-thing")
    assert "already a publisher" in cli(elsewhere, ini, "publisher", "add", "foo", "github", "octo/foo",
                                        "release.yml", "--environment", "pypi", expect=1).stderr
    assert "not a workflow filename" in cli(elsewhere, ini, "publisher", "add", "foo", "github", "octo/foo",
                                            ".github/workflows/x.yml", expect=1).stderr
    assert "not OWNER/NAME" in cli(elsewhere, ini, "publisher", "add", "foo", "github", "foo", "x.yml",
                                   expect=1).stderr
    listed = rows(cli(elsewhere, ini, "publisher", "list"))
    assert [(p["id"], p["project"], p["pending"], p["kind"], p["environment"], p["acts for"]) for p in listed] == [
        ("1", "foo", "no", "github", "pypi", "alice"), ("2", "new-thing", "yes", "gitlab", "any", "alice")]
    assert [p["id"] for p in rows(cli(elsewhere, ini, "publisher", "list", "foo"))] == ["1"]
    assert cli(elsewhere, ini, "publisher", "remove", "1").stdout.startswith("removed trusted publisher 1 of foo")
    assert "no such trusted publisher" in cli(elsewhere, ini, "publisher", "remove", "1", expect=1).stderr
    assert [p["id"] for p in rows(cli(elsewhere, ini, "publisher", "list"))] == ["2"]
