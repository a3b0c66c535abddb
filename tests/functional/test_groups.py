"""Release groups (this index's extension): sessions of several projects published in one
transaction or not at all, through the 2.0 API and the full app."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa
import time_machine

from pypi_upload2.builtin.auth import new_token
from pypi_upload2.builtin.models import Filename, Project, Release, ReleaseFile, User
from pypi_upload2.models import PublishingSession, ReleaseGroup
from tests.conftest import RFC3339_Z, Uploader, assert_problem, build_sdist, build_wheel, count
from tests.functional.test_authorization import grant, revoke
from tests.functional.test_deferred import run_task

PROJECTS = ("core", "core-cli", "core-plugins")
KEY = "vnd-upload2-publish-after"


def staged(uploader, dist_dir, name, version="1.0", **wheel):
    session = uploader.create_session(name, version).json
    for path in (build_sdist(dist_dir, name, version), build_wheel(dist_dir, name, version, **wheel)):
        uploader.upload(session, path)
    return session


def groups_url(uploader) -> str:
    return uploader.app.get("/2.0/").json["links"]["vnd-upload2-groups"]


def new_group(uploader, sessions=(), status=201):
    return uploader.post(groups_url(uploader), {"sessions": [s["session-token"] for s in sessions]}, status=status)


def statuses(dbsession) -> dict[str, str]:
    """Each project's 1.0 session's status."""
    dbsession.expire_all()
    found = {s.normalized_name: str(s.status) for s in dbsession.scalars(
        sa.select(PublishingSession).where(PublishingSession.version == "1.0"))}
    dbsession.commit()
    return found


@pytest.fixture
def three(alice, dist_dir):
    """The three projects of a monorepo, each staged in a session of its own."""
    return [staged(alice, dist_dir, name) for name in PROJECTS]


def test_the_root_links_the_groups_without_credentials(testapp):
    body = testapp.get("/2.0/").json
    assert body == {"meta": {"api-version": "2.0"}, "links": {"vnd-upload2-groups": "http://localhost/2.0/groups/"}}


def test_a_group_of_three_projects_publishes_them_at_once(alice, three, dbsession, testapp):
    created = new_group(alice, three)
    group = created.json
    assert created.headers["Location"] == group["links"]["group"]
    assert group["status"] == "open" and RFC3339_Z.fullmatch(group["expires-at"])
    assert [(m["name"], m["status"]) for m in group["sessions"]] == [(n, "open") for n in PROJECTS]
    # Each member links its group (an extension key: PEP 694 clients ignore it).
    member = alice.get(three[0]["links"]["session"]).json
    assert member["links"]["vnd-upload2-group"] == group["links"]["group"]
    assert alice.get(group["links"]["vnd-upload2-preflight"]).json["errors"] == []

    published = alice.post(group["links"]["publish"], status=201)
    assert published.headers["Location"] == group["links"]["group"]
    assert published.json["status"] == "published"
    assert {m["status"] for m in published.json["sessions"]} == {"published"}
    assert statuses(dbsession) == dict.fromkeys(PROJECTS, "published")
    assert count(dbsession, ReleaseFile) == 6 and count(dbsession, Project) == 3
    for name in PROJECTS:
        page = testapp.get(f"/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json
        assert len(page["files"]) == 2
    # Ended: publishing again is the PEP's 409 for a published session.
    assert_problem(alice.post(group["links"]["publish"], status=409), 409, source="status")


@pytest.mark.parametrize("failure", ["filename conflict", "publish check"])
def test_one_failing_file_leaves_all_three_unpublished_and_editable(make_app, make_user, dist_dir, dbsession,
                                                                    failure):
    app = make_app(**({"upload2.project_quota": "4000"} if failure == "publish check" else {}))
    alice = Uploader(app, make_user("alice"))
    sessions = [staged(alice, dist_dir, name, padding=3000 if name == "core-plugins" and failure == "publish check"
                       else 0) for name in PROJECTS]
    group = new_group(alice, sessions).json
    if failure == "filename conflict":
        # Another door took the last project's wheel name after it was staged.
        dbsession.add(Filename(filename="core_plugins-1.0-py3-none-any.whl"))
        dbsession.commit()
        body = assert_problem(alice.post(group["links"]["publish"], status=409), 409,
                              source="core_plugins-1.0-py3-none-any.whl")
    else:
        body = assert_problem(alice.post(group["links"]["publish"], status=422), 422)
        assert "quota" in str(body["errors"])

    assert statuses(dbsession) == dict.fromkeys(PROJECTS, "open")
    assert count(dbsession, ReleaseFile) == 0 and count(dbsession, Release) == 0 and count(dbsession, Project) == 0
    assert count(dbsession, Filename) == (1 if failure == "filename conflict" else 0)  # no reservation kept
    assert alice.get(group["links"]["group"]).json["status"] == "open"
    # Every session is still editable: a file is replaced, and the group then publishes.
    first = alice.get(sessions[0]["links"]["session"]).json
    alice.delete(first["files"]["core-1.0.tar.gz"]["link"])
    alice.upload(sessions[0], build_sdist(dist_dir, "core", "1.0"))
    if failure == "filename conflict":
        remove = next(m["remove"] for m in alice.get(group["links"]["group"]).json["sessions"]
                      if m["name"] == "core-plugins")
        alice.delete(remove)
    else:
        link = alice.get(sessions[2]["links"]["session"]).json["files"]["core_plugins-1.0-py3-none-any.whl"]["link"]
        alice.delete(link)
    assert alice.post(group["links"]["publish"]).json["status"] == "published"
    assert count(dbsession, ReleaseFile) == (4 if failure == "filename conflict" else 5)


def test_a_stage_only_token_may_build_a_group_but_not_publish_it(alice, make_user, dist_dir, dbsession, testapp):
    user = dbsession.scalar(sa.select(User).where(User.username == "alice"))
    ci = Uploader(testapp, new_token(dbsession, user, "CI", may_publish=False))
    dbsession.commit()
    sessions = [staged(ci, dist_dir, name) for name in PROJECTS]
    group = new_group(ci).json
    for session in sessions:
        group = ci.post(group["links"]["sessions"], {"session-token": session["session-token"]}).json
    assert len(group["sessions"]) == 3
    body = assert_problem(ci.post(group["links"]["publish"], status=403), 403, source="authorization")
    assert "lacks the publish permission" in body["detail"]
    assert statuses(dbsession) == dict.fromkeys(PROJECTS, "open") and count(dbsession, Filename) == 0
    # A maintainer's publishing token publishes it.
    assert alice.post(group["links"]["publish"]).json["status"] == "published"


def test_authorization_is_checked_for_every_member_on_every_request(alice, bob, three, dbsession, dist_dir):
    for name in PROJECTS:  # published once, so that roles decide who may upload
        first = alice.create_session(name, "0.1").json
        alice.upload(first, build_wheel(dist_dir, name, "0.1"))
        alice.publish(first)
    group = new_group(alice, three).json
    # bob holds the group's URL and may upload to two of the three projects: not enough.
    grant(dbsession, "bob", "core")
    grant(dbsession, "bob", "core-cli")
    assert_problem(bob.get(group["links"]["group"], status=403), 403, source="authorization")
    assert_problem(bob.post(group["links"]["publish"], status=403), 403, source="authorization")
    grant(dbsession, "bob", "core-plugins")
    assert bob.get(group["links"]["group"]).json["status"] == "open"
    # alice loses one project's role: the next request of hers is refused, whatever she created.
    revoke(dbsession, "alice", "core-cli")
    assert_problem(alice.post(group["links"]["publish"], status=403), 403, source="authorization")
    assert statuses(dbsession)["core"] == "open"
    # Nor may she add a session of a project she may not upload to (bob's own).
    theirs = bob.create_session("bobs", "1.0").json
    assert_problem(alice.post(new_group(alice).json["links"]["sessions"],
                              {"session-token": theirs["session-token"]}, status=403), 403)
    # An empty group is its creator's alone.
    empty = new_group(alice).json
    assert_problem(bob.get(empty["links"]["group"], status=403), 403, source="authorization")
    assert bob.post(group["links"]["publish"]).json["status"] == "published"


def test_a_member_cannot_publish_alone_while_its_group_is_open(alice, three, dbsession):
    group = new_group(alice, three).json
    body = assert_problem(alice.publish(three[0], status=409), 409, source="vnd-upload2-group")
    assert "publish the group" in body["detail"]
    preflight = assert_problem(alice.get(three[0]["links"]["vnd-upload2-preflight"], status=409), 409,
                               source="vnd-upload2-group")
    assert len(preflight["errors"]) == 1
    assert statuses(dbsession)["core"] == "open"
    # Removed from the group, it publishes alone; the group keeps the other two.
    remaining = alice.delete(group["sessions"][0]["remove"]).json
    assert [m["name"] for m in remaining["sessions"]] == ["core-cli", "core-plugins"]
    assert "vnd-upload2-group" not in alice.get(three[0]["links"]["session"]).json["links"]
    alice.publish(three[0])
    assert statuses(dbsession) == {"core": "published", "core-cli": "open", "core-plugins": "open"}


def test_sessions_are_added_and_removed_while_the_group_is_open(alice, three, dist_dir, dbsession):
    group = new_group(alice).json
    assert group["sessions"] == []
    for session in three[:2]:
        group = alice.post(group["links"]["sessions"], {"session-token": session["session-token"]}).json
    again = alice.post(group["links"]["sessions"], {"session-token": three[0]["session-token"]}).json
    assert [m["name"] for m in again["sessions"]] == ["core", "core-cli"]  # adding twice is adding once
    # One session per project; a session of another group's; a published one; an unknown token.
    other_core = alice.create_session("core", "2.0").json
    assert_problem(alice.post(group["links"]["sessions"], {"session-token": other_core["session-token"]},
                              status=409), 409, source="session-token")
    other_group = new_group(alice, [three[2]]).json
    assert_problem(alice.post(group["links"]["sessions"], {"session-token": three[2]["session-token"]},
                              status=409), 409, source="session-token")
    assert_problem(alice.post(group["links"]["sessions"], {"session-token": "nope"}, status=404), 404,
                   source="session-token")
    assert_problem(new_group(alice, [three[2], {"session-token": "nope"}], status=404), 404)
    assert_problem(alice.post(group["links"]["sessions"], {"session-token": 7}, status=404), 404)
    assert_problem(alice.post(groups_url(alice), {"sessions": "core"}, status=400), 400, source="sessions")
    assert count(dbsession, ReleaseGroup) == 2  # the refused creations left no group behind
    # The other group's member leaves it, and joins this one.
    alice.delete(other_group["sessions"][0]["remove"])
    group = alice.post(group["links"]["sessions"], {"session-token": three[2]["session-token"]}).json
    assert [m["name"] for m in group["sessions"]] == list(PROJECTS)
    assert_problem(alice.delete(other_group["links"]["group"] + "sessions/nope/", status=409), 409)
    alice.post(group["links"]["publish"])
    # Ended: no more edits.
    assert_problem(alice.delete(group["sessions"][0]["remove"], status=409), 409, source="status")
    assert_problem(alice.post(group["links"]["sessions"], {"session-token": other_core["session-token"]},
                              status=409), 409, source="status")


def test_cancel_and_extend(alice, three, dbsession):
    group = new_group(alice, three).json
    extended = alice.post(group["links"]["extend"], {"extend-for": 14 * 24 * 3600}).json
    assert extended["expires-at"] > group["expires-at"]
    for session in three:
        assert alice.get(session["links"]["session"]).json["expires-at"] > three[0]["expires-at"]
    assert_problem(alice.post(group["links"]["extend"], {"extend-for": "1"}, status=400), 400, source="extend-for")
    # One member canceled alone leaves the group.
    alice.delete(three[2]["links"]["session"])
    assert [m["name"] for m in alice.get(group["links"]["group"]).json["sessions"]] == ["core", "core-cli"]
    canceled = alice.delete(group["links"]["group"]).json
    assert canceled["status"] == "canceled" and {m["status"] for m in canceled["sessions"]} == {"canceled"}
    assert statuses(dbsession) == dict.fromkeys(PROJECTS, "canceled")
    assert_problem(alice.app.get(group["links"]["stage"], status=404), 404)


def test_an_expired_group_is_canceled_with_its_sessions(alice, three, dbsession, testapp):
    group = new_group(alice, three).json
    dbsession.execute(sa.update(ReleaseGroup).values(expires_at=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)))
    dbsession.commit()
    run_task(testapp.app, "expire_sessions")
    body = alice.get(group["links"]["group"]).json
    assert body["status"] == "canceled" and body["notices"] == ["Canceled by the server: the release group expired."]
    assert statuses(dbsession) == dict.fromkeys(PROJECTS, "canceled")


def test_deferred_the_group_processes_and_the_task_settles_it(make_app, make_user, dist_dir, dbsession):
    app = make_app(**{"upload2.publish_mode": "deferred"})
    alice = Uploader(app, make_user("alice"))
    group = new_group(alice, [staged(alice, dist_dir, name) for name in PROJECTS]).json
    response = alice.post(group["links"]["publish"], status=202)
    assert response.json["status"] == "processing" and response.headers["Retry-After"] == "1"
    # No broker: the task ran right after the request committed.
    assert alice.get(group["links"]["group"]).json["status"] == "published"
    assert statuses(dbsession) == dict.fromkeys(PROJECTS, "published") and count(dbsession, ReleaseFile) == 6


def test_deferred_a_failed_check_leaves_the_group_and_every_session_in_error(make_app, make_user, dist_dir,
                                                                             dbsession):
    app = make_app(**{"upload2.publish_mode": "deferred", "upload2.project_quota": "4000"})
    alice = Uploader(app, make_user("alice"))
    sessions = [staged(alice, dist_dir, name, padding=3000 if name == "core-cli" else 0) for name in PROJECTS]
    group = new_group(alice, sessions).json
    alice.post(group["links"]["publish"], status=202)
    body = alice.get(group["links"]["group"]).json
    assert body["status"] == "error" and len(body["notices"]) == 1
    assert body["notices"][0].startswith("Publish failed: core-cli 1.0:") and "quota" in body["notices"][0]
    assert statuses(dbsession) == dict.fromkeys(PROJECTS, "error")
    bystander = alice.get(sessions[0]["links"]["session"]).json
    assert bystander["notices"] == ["Publish failed: another session of its release group failed to publish"]
    assert count(dbsession, ReleaseFile) == 0 and count(dbsession, Filename) == 0
    # Editable again: the oversized wheel goes, and the group publishes.
    alice.delete(alice.get(sessions[1]["links"]["session"]).json["files"]["core_cli-1.0-py3-none-any.whl"]["link"])
    alice.post(group["links"]["publish"], status=202)
    assert alice.get(group["links"]["group"]).json["status"] == "published"
    assert count(dbsession, ReleaseFile) == 5


def test_a_processing_member_is_never_published_alone(make_app, make_user, dist_dir, dbsession):
    """A stray task of a member's (a re-send) leaves it to its group's task."""
    app = make_app(**{"upload2.scheduled_publish": "true"})
    alice = Uploader(app, make_user("alice"))
    group = new_group(alice, [staged(alice, dist_dir, name) for name in PROJECTS]).json
    when = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=2)).replace(microsecond=0)
    alice.post(group["links"]["publish"], {KEY: when.strftime("%Y-%m-%dT%H:%M:%SZ")}, status=202)
    member = dbsession.scalar(sa.select(PublishingSession.id).where(PublishingSession.normalized_name == "core"))
    dbsession.commit()
    run_task(app.app, "publish_session", member)
    assert statuses(dbsession) == dict.fromkeys(PROJECTS, "processing") and count(dbsession, ReleaseFile) == 0


def test_a_scheduled_group_publishes_at_its_time_unless_unscheduled(make_app, make_user, dist_dir, dbsession):
    app = make_app(**{"upload2.scheduled_publish": "true"})
    alice = Uploader(app, make_user("alice"))
    group = new_group(alice, [staged(alice, dist_dir, name) for name in PROJECTS]).json
    when = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=2)).replace(microsecond=0)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = alice.post(group["links"]["publish"], {KEY: stamp}, status=202).json
    assert body["status"] == "processing" and body[KEY] == stamp
    assert statuses(dbsession) == dict.fromkeys(PROJECTS, "processing") and count(dbsession, Filename) == 6
    # Cancel waits for an explicit unschedule, as a session's does.
    assert_problem(alice.delete(group["links"]["group"], status=409), 409, source="status")
    reopened = alice.post(body["links"]["vnd-upload2-unschedule"]).json
    assert reopened["status"] == "open" and KEY not in reopened and "vnd-upload2-unschedule" not in reopened["links"]
    assert statuses(dbsession) == dict.fromkeys(PROJECTS, "open") and count(dbsession, Filename) == 0
    assert_problem(alice.post(group["links"]["group"] + "unschedule", status=409), 409, source="status")

    alice.post(group["links"]["publish"], {KEY: stamp}, status=202)
    with time_machine.travel(when - datetime.timedelta(minutes=1), tick=False):
        run_task(app.app, "publish_due")
        run_task(app.app, "resend_processing")
    assert count(dbsession, ReleaseFile) == 0
    with time_machine.travel(when + datetime.timedelta(seconds=5), tick=False):
        run_task(app.app, "publish_due")
    assert alice.get(group["links"]["group"]).json["status"] == "published"
    assert statuses(dbsession) == dict.fromkeys(PROJECTS, "published") and count(dbsession, ReleaseFile) == 6


def test_preflight_lists_every_members_problems(alice, three, dist_dir, dbsession):
    group = new_group(alice, three).json
    alice.start_file(three[1], build_wheel(dist_dir, "core-cli", "1.0", tag="py2.py3-none-any"))
    dbsession.add(Filename(filename="core_plugins-1.0-py3-none-any.whl"))
    dbsession.commit()
    body = assert_problem(alice.get(group["links"]["vnd-upload2-preflight"], status=409), 409)
    assert {(e["source"], e["message"]) for e in body["errors"]} == {
        ("core_cli-1.0-py2.py3-none-any.whl", "core-cli 1.0: status is pending, not completed"),
        ("core_plugins-1.0-py3-none-any.whl", "core-plugins 1.0: this filename is already used in the index"),
    }
    assert statuses(dbsession) == dict.fromkeys(PROJECTS, "open")


def test_the_group_stage_is_one_index_of_every_member(alice, three, testapp, dist_dir):
    group = new_group(alice, three).json
    stage = group["links"]["stage"]
    json_accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    index = testapp.get(stage, headers=json_accept)  # the stage is a capability: no credentials
    assert [p["name"] for p in index.json["projects"]] == list(PROJECTS)
    assert index.headers["Cache-Control"] == "private, no-store"
    page = testapp.get(stage + "core-cli/", headers=json_accept).json
    assert sorted(f["filename"] for f in page["files"]) == ["core_cli-1.0-py3-none-any.whl", "core_cli-1.0.tar.gz"]
    wheel = next(f for f in page["files"] if f["filename"].endswith(".whl"))
    assert wheel["url"].startswith(stage + "files/")
    assert testapp.get(wheel["url"]).body == (dist_dir / "core_cli-1.0-py3-none-any.whl").read_bytes()
    assert testapp.get(wheel["url"] + ".metadata").body.startswith(b"Metadata-Version")
    assert testapp.get(stage + "Core_CLI/", status=301).location.endswith("/core-cli/")
    assert_problem(testapp.get(stage + "other/", status=404), 404)
    # A file of a session outside the group is not in its stage.
    outside = staged(alice, dist_dir, "outside")
    file_link = alice.get(outside["links"]["session"]).json["files"]["outside-1.0.tar.gz"]["link"]
    file_id = file_link.rstrip("/").rsplit("/", 1)[1]
    assert_problem(testapp.get(f"{stage}files/{file_id}/outside-1.0.tar.gz", status=404), 404)
    assert_problem(testapp.get("/2.0/group-stage/nope/", status=404), 404)
    alice.post(group["links"]["publish"])
    assert_problem(testapp.get(stage, status=404), 404)


def test_other_methods_are_405_with_allow(alice):
    group = new_group(alice).json
    allowed = {"group": "GET, HEAD, DELETE", "stage": None, "sessions": "POST", "publish": "POST", "extend": "POST",
               "vnd-upload2-preflight": "GET, HEAD", "vnd-upload2-diff": "GET, HEAD"}
    assert set(group["links"]) == set(allowed)
    for link, allow in allowed.items():
        if allow is not None:  # the stage is a simple index (GET only, its own answers)
            assert alice.app.request(group["links"][link], method="TRACE", status=405).headers["Allow"] == allow
    assert alice.app.put("/2.0/", status=405).headers["Allow"] == "GET, HEAD, POST"
    assert alice.app.get(groups_url(alice), status=405).headers["Allow"] == "POST"


def test_the_group_diff_is_each_members_diff_against_its_latest_release(alice, bob, dist_dir):
    first = alice.create_session("core", "1.0").json
    alice.upload(first, build_wheel(dist_dir, "core", "1.0"))
    alice.publish(first)
    core = alice.create_session("core", "2.0").json
    alice.upload(core, build_wheel(dist_dir, "core", "2.0", requires_dist=["core-cli>=1.0"]))
    cli = staged(alice, dist_dir, "core-cli")
    group = new_group(alice, [core, cli]).json

    body = alice.get(group["links"]["vnd-upload2-diff"]).json
    assert [(s["name"], s["version"], s["base-version"]) for s in body["sessions"]] == [
        ("core", "2.0", "1.0"), ("core-cli", "1.0", None)]
    assert body["sessions"][0]["requires-dist"]["added"] == ["core-cli>=1.0"]
    assert body["sessions"][1]["files"]["added"] == ["core_cli-1.0-py3-none-any.whl", "core_cli-1.0.tar.gz"]
    # Each is what the session's own link answers.
    for member, session in zip(body["sessions"], (core, cli)):
        own = alice.get(session["links"]["vnd-upload2-diff"]).json
        assert {k: v for k, v in member.items() if k not in ("name", "version")} == \
            {k: v for k, v in own.items() if k != "meta"}
    # Authorized as every group request: bob may upload to neither.
    assert_problem(bob.get(group["links"]["vnd-upload2-diff"], status=403), 403, source="authorization")
    assert [m["status"] for m in alice.get(group["links"]["group"]).json["sessions"]] == ["open", "open"]
