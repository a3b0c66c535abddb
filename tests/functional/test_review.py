"""Reviewing a stage before publishing: the preflight (every problem a publish would hit, and
nothing changed) and the stage diff against the latest published release."""

from __future__ import annotations

import datetime

import sqlalchemy as sa

from pypi_upload2.builtin.models import Filename, Release
from pypi_upload2.models import FileUploadSession, PublishingSession
from tests.conftest import Uploader, assert_problem, build_sdist, build_wheel, count, fetch


def _staged(alice, dist_dir, version="1.0", **wheel):
    session = alice.create_session("foo", version).json
    for path in (build_sdist(dist_dir, "foo", version), build_wheel(dist_dir, "foo", version, **wheel)):
        alice.upload(session, path)
    return session


def test_sessions_link_the_extensions_under_the_vendor_prefix(alice):
    links = alice.create_session().json["links"]
    assert links["vnd-upload2-preflight"].endswith("/preflight")
    assert links["vnd-upload2-diff"].endswith("/diff")


def test_a_clean_stage_passes_preflight_and_then_publishes(alice, dist_dir):
    session = _staged(alice, dist_dir)
    assert alice.get(session["links"]["vnd-upload2-preflight"]).json == {
        "meta": {"api-version": "2.0"}, "status": "open", "errors": []}
    alice.publish(session)


def test_preflight_lists_every_problem_at_once_and_changes_nothing(make_app, make_user, dist_dir, dbsession):
    alice = Uploader(make_app(**{"upload2.project_quota": "1000"}), make_user("alice"))
    session = alice.create_session().json
    # A wheel over the project's quota (a publish check), and a file left pending.
    alice.upload(session, build_wheel(dist_dir, "foo", "1.0", padding=2000))
    alice.start_file(session, build_sdist(dist_dir, "foo", "1.0"))
    before = [(s.status, s.notices) for s in dbsession.scalars(sa.select(PublishingSession))]
    files_before = [(f.status, f.notices) for f in dbsession.scalars(sa.select(FileUploadSession))]
    dbsession.commit()

    body = assert_problem(alice.get(session["links"]["vnd-upload2-preflight"], status=409), 409)
    assert body["title"] == "Publish would fail"
    messages = {e["source"]: e["message"] for e in body["errors"]}
    assert messages["foo-1.0.tar.gz"] == "status is pending, not completed"
    assert "over its quota of 1000 bytes" in messages["session"]

    assert [(s.status, s.notices) for s in dbsession.scalars(sa.select(PublishingSession))] == before
    assert [(f.status, f.notices) for f in dbsession.scalars(sa.select(FileUploadSession))] == files_before
    assert count(dbsession, Filename) == 0  # no filename was reserved
    dbsession.commit()


def test_preflight_sees_a_filename_taken_meanwhile(alice, dist_dir, dbsession):
    session = _staged(alice, dist_dir)
    # Another door took the wheel's name after it was uploaded here (the index's namespace).
    dbsession.add(Filename(filename="foo-1.0-py3-none-any.whl"))
    dbsession.commit()
    body = assert_problem(alice.get(session["links"]["vnd-upload2-preflight"], status=409), 409,
                          source="foo-1.0-py3-none-any.whl")
    assert body["errors"] == [{"source": "foo-1.0-py3-none-any.whl",
                               "message": "this filename is already used in the index"}]
    # The publish agrees with it.
    assert_problem(alice.publish(session, status=409), 409, source="foo-1.0-py3-none-any.whl")


def test_preflight_sees_the_new_files_window_closed(alice, dist_dir, dbsession):
    first = alice.create_session().json
    alice.upload(first, build_wheel(dist_dir, "foo", "1.0"))
    alice.publish(first)
    later = alice.create_session().json
    alice.upload(later, build_sdist(dist_dir, "foo", "1.0"))
    release = dbsession.scalar(sa.select(Release).where(Release.version == "1.0"))
    release.published_at -= datetime.timedelta(days=30)  # first published a month ago
    dbsession.commit()
    body = assert_problem(alice.get(later["links"]["vnd-upload2-preflight"], status=409), 409, source="session")
    assert "new files can be added only within" in body["errors"][0]["message"]


def test_preflight_of_an_ended_session_says_so(alice, dist_dir):
    session = _staged(alice, dist_dir)
    alice.delete(session["links"]["session"])
    body = assert_problem(alice.get(session["links"]["vnd-upload2-preflight"], status=409), 409)
    assert any("canceled" in e["message"] for e in body["errors"])


def test_only_uploaders_of_the_project_review_its_stage(alice, bob, dist_dir):
    session = _staged(alice, dist_dir)
    for link in ("vnd-upload2-preflight", "vnd-upload2-diff"):
        assert_problem(bob.get(session["links"][link], status=403), 403)
        assert_problem(Uploader(alice.app, "pypi-upload2-1-wrong").get(session["links"][link], status=401), 401)


# -- the stage diff ---------------------------------------------------------------------------

def _dist_info_member(version: str, name: str) -> str:
    return f"foo-{version}.dist-info/{name}"


def test_a_first_release_is_all_new(alice, dist_dir):
    session = _staged(alice, dist_dir)
    body = alice.get(session["links"]["vnd-upload2-diff"]).json
    assert body["base-version"] is None
    assert body["files"]["added"] == ["foo-1.0-py3-none-any.whl", "foo-1.0.tar.gz"]
    assert body["top-level-modules"] == {"added": ["foo"], "removed": []}
    assert body["notices"] == ["Nothing of this project is published yet: everything is new."]


def test_the_diff_reports_every_kind_of_change_against_the_latest_release(alice, dist_dir, tmp_path):
    old = alice.create_session("foo", "1.0").json
    alice.upload(old, build_sdist(dist_dir, "foo", "1.0"))
    for tag in ("py3-none-any", "cp311-cp311-manylinux_2_17_x86_64"):
        alice.upload(old, build_wheel(
            dist_dir, "foo", "1.0", tag=tag, requires_python=">=3.9",
            requires_dist=["requests>=2", "click", "tomli; python_version < '3.11'"],
            extra_members={"foo_legacy.py": b"", _dist_info_member("1.0", "entry_points.txt"):
                           b"[console_scripts]\nfoo = foo:main\nfoo-old = foo:old\n"}))
    alice.publish(old)
    # A 0.9 published later stays older: the base is the latest version, not the newest upload.
    older = alice.create_session("foo", "0.9").json
    alice.upload(older, build_wheel(dist_dir, "foo", "0.9"))
    alice.publish(older)

    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new = alice.create_session("foo", "2.0").json
    alice.upload(new, build_wheel(
        new_dir, "foo", "2.0", tag="py3-none-any", requires_python=">=3.10", padding=64 * 1024,
        requires_dist=["requests>=2.31", "rich", "tomli; python_version < '3.11'"],
        extra_members={"foo_cli/__init__.py": b"", "foo-hook.pth": b"import foo_cli\n",
                       _dist_info_member("2.0", "entry_points.txt"):
                       b"[console_scripts]\nfoo = foo:main\nfoo-cli = foo_cli:main\n"}))

    body = alice.get(new["links"]["vnd-upload2-diff"]).json
    assert body["base-version"] == "1.0"
    assert body["files"] == {"added": [], "removed": ["foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                                                      "foo-1.0.tar.gz"]}
    assert body["wheel-tags"] == {"added": [], "removed": ["cp311-cp311-manylinux_2_17_x86_64"]}
    assert body["requires-python"] == {"old": ">=3.9", "new": ">=3.10"}
    assert body["requires-dist"] == {"added": ["rich"], "removed": ["click"],
                                     "changed": [{"old": "requests>=2", "new": "requests>=2.31"}]}
    assert body["entry-points"] == {"added": ["console_scripts:foo-cli"], "removed": ["console_scripts:foo-old"]}
    assert body["top-level-modules"] == {"added": ["foo_cli"], "removed": ["foo_legacy"]}
    assert body["pth-files"] == {"added": ["foo-hook.pth"], "removed": []}
    [change] = body["size-changes"]
    assert change["kind"] == "wheel py3-none-any" and change["new"]["size"] > 1.25 * change["old"]["size"]
    assert body["notices"] == []


def test_the_diff_only_reads(alice, dist_dir, dbsession):
    session = _staged(alice, dist_dir)
    alice.get(session["links"]["vnd-upload2-diff"])
    assert fetch(dbsession, PublishingSession, id=1).status == "open"
    alice.publish(session)
