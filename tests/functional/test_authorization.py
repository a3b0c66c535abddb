"""The PEP's "Authentication and Authorization": every session request is authorized against
the project's upload permission at the time of that request, not against who created it."""

from __future__ import annotations

import argparse

import pytest
import sqlalchemy as sa

from pypi_upload2.admin import Failure, project_grant, project_revoke
from pypi_upload2.builtin.models import Project, Role, User
from tests.conftest import CT, assert_problem, build_sdist, build_wheel


def grant(dbsession, username: str, name: str) -> None:
    user = dbsession.scalar(sa.select(User).where(User.username == username))
    project = dbsession.scalar(sa.select(Project).where(Project.normalized_name == name))
    dbsession.add(Role(user_id=user.id, project_id=project.id, role_name="Maintainer"))
    dbsession.commit()


def revoke(dbsession, username: str, name: str) -> None:
    dbsession.execute(sa.delete(Role).where(
        Role.user_id == sa.select(User.id).where(User.username == username).scalar_subquery(),
        Role.project_id == sa.select(Project.id).where(Project.normalized_name == name).scalar_subquery()))
    dbsession.commit()


def stored(storage_dir) -> list:
    return sorted(p for p in storage_dir.rglob("*") if p.is_file())


def cli(dbsession, command, user: str, project: str) -> None:
    command(dbsession, argparse.Namespace(user=user, project=project))
    dbsession.commit()


@pytest.fixture
def registered(alice, dist_dir):
    """``foo`` with a published 1.0, owned by alice."""
    session = alice.create_session("foo", "1.0").json
    alice.upload(session, build_wheel(dist_dir, "foo", "1.0"))
    alice.publish(session)


def test_a_granted_user_may_upload_to_and_publish_anothers_session(
        alice, bob, registered, testapp, dist_dir, dbsession, capsys):
    session = alice.create_session("foo", "2.0").json
    assert_problem(bob.get(session["links"]["session"], status=403), 403, "authorization")
    assert_problem(bob.create_session("foo", "2.0", status=403), 403)

    cli(dbsession, project_grant, "bob", "foo")
    assert "bob may now upload to foo" in capsys.readouterr().out
    # Now bob learns of the live session through the 409, and joins it.
    joined = bob.create_session("foo", "2.0", status=409)
    assert joined.headers["Location"] == session["links"]["session"]
    status = bob.get(joined.headers["Location"]).json
    assert status["session-token"] == session["session-token"]
    wheel, sdist = build_wheel(dist_dir, "foo", "2.0"), build_sdist(dist_dir, "foo", "2.0")
    bob.upload(status, wheel)
    alice.upload(session, sdist)
    published = bob.publish(status)
    assert published.json["status"] == "published"
    page = testapp.get("/simple/foo/")
    assert {wheel.name, sdist.name} <= {a.text for a in page.html.find_all("a")}


def test_a_reserved_names_first_release_is_its_creators_until_published_then_the_projects(
        alice, bob, dist_dir, dbsession):
    # A reserved new name is no project of the host's yet: nobody can be granted a role on it,
    # and only the principal that reserved it may use its sessions.
    session = alice.create_session("fresh", "1.0").json
    later = alice.create_session("fresh", "2.0").json
    assert_problem(bob.start_file(session, build_wheel(dist_dir, "fresh", "1.0"), status=403), 403)
    assert_problem(bob.get(session["links"]["session"], status=403), 403, "authorization")
    assert_problem(bob.publish(session, status=403), 403, "authorization")
    with pytest.raises(Failure, match="no such project"):
        cli(dbsession, project_grant, "bob", "fresh")
    dbsession.rollback()
    alice.upload(session, build_wheel(dist_dir, "fresh", "1.0"))
    assert alice.publish(session).json["status"] == "published"
    # Registered: a user granted on the project may join the other first-release session.
    assert_problem(bob.get(later["links"]["session"], status=403), 403, "authorization")
    grant(dbsession, "bob", "fresh")
    bob.upload(later, build_wheel(dist_dir, "fresh", "2.0"))
    assert bob.publish(later).json["status"] == "published"


def _requests(alice, session, file, done):
    """Every request on an open session and its files, as (what, callable(status))."""
    links, flinks = session["links"], file["links"]
    return [
        ("session status", lambda s: alice.get(links["session"], status=s)),
        ("extend", lambda s: alice.post(links["extend"], {"extend-for": 60}, status=s)),
        ("file status", lambda s: alice.get(flinks["file-upload-session"], status=s)),
        ("file extend", lambda s: alice.post(flinks["extend"], {"extend-for": 60}, status=s)),
        ("bytes", lambda s: alice.send_bytes(file, done["data"], status={"2*": 204}.get(s, s))),
        ("complete", lambda s: alice.post(flinks["complete"], status=s)),
        ("upload", lambda s: alice.start_file(session, done["sdist"], status={"2*": 202}.get(s, s))),
        ("file delete", lambda s: alice.delete(done["sdist_link"](), status=s)),
        ("publish", lambda s: alice.publish(session, status={"2*": 201}.get(s, s))),
    ]


def test_revoking_the_creators_role_refuses_every_request_until_it_is_restored(
        alice, registered, dist_dir, dbsession, storage_dir, capsys):
    session = alice.create_session("foo", "2.0").json
    wheel = build_wheel(dist_dir, "foo", "2.0")
    file = alice.start_file(session, wheel).json
    done = {"data": wheel.read_bytes(), "sdist": build_sdist(dist_dir, "foo", "2.0"),
            "sdist_link": lambda: alice.get(session["links"]["session"]).json["files"][
                done["sdist"].name]["link"]}
    before = alice.get(session["links"]["session"]).json
    kept = stored(storage_dir)

    cli(dbsession, project_revoke, "alice", "foo")
    assert "alice may no longer upload to foo" in capsys.readouterr().out
    for what, request in _requests(alice, session, file, done):
        if what == "file delete":
            continue  # there is no sdist to delete yet; see the cancel below
        assert_problem(request(403), 403, "authorization")
    assert_problem(alice.delete(file["links"]["file-upload-session"], status=403), 403)
    assert_problem(alice.delete(session["links"]["session"], status=403), 403)
    assert_problem(alice.create_session("foo", "2.0", status=403), 403)
    assert_problem(alice.create_session("foo", "3.0", status=403), 403)
    assert stored(storage_dir) == kept  # the refused bytes were not kept

    # Not sticky: restored, the same principal carries on where it stopped.
    grant(dbsession, "alice", "foo")
    assert alice.get(session["links"]["session"]).json == before
    for what, request in _requests(alice, session, file, done):
        assert request("2*").status_int < 300, what
    assert alice.get(session["links"]["session"]).json["status"] == "published"

    # Cancel is authorized the same way.
    other = alice.create_session("foo", "3.0").json
    revoke(dbsession, "alice", "foo")
    assert_problem(alice.delete(other["links"]["session"], status=403), 403)
    grant(dbsession, "alice", "foo")
    assert alice.delete(other["links"]["session"]).json["status"] == "canceled"


def test_revoking_the_role_of_a_reserved_names_creator_refuses_it_too(alice, dist_dir, dbsession):
    # Both sessions were created while the name was only reserved; once the first publishes,
    # the other is authorized by the creator's role on the project, not by having created it.
    first = alice.create_session("fresh", "1.0").json
    session = alice.create_session("fresh", "2.0").json
    alice.publish(first)
    revoke(dbsession, "alice", "fresh")
    assert_problem(alice.get(session["links"]["session"], status=403), 403)
    assert_problem(alice.start_file(session, build_wheel(dist_dir, "fresh", "2.0"), status=403), 403)
    assert_problem(alice.publish(session, status=403), 403)
    assert_problem(alice.delete(session["links"]["session"], status=403), 403)
    grant(dbsession, "alice", "fresh")
    assert alice.publish(session).json["status"] == "published"


def test_a_403_changes_nothing(alice, bob, registered, dist_dir):
    session = alice.create_session("foo", "2.0").json
    file = alice.start_file(session, build_wheel(dist_dir, "foo", "2.0")).json
    before = alice.get(session["links"]["session"]).json
    bob.send_bytes(file, b"x" * 10, status=403)
    bob.post(file["links"]["complete"], status=403)
    bob.delete(file["links"]["file-upload-session"], status=403)
    bob.post(session["links"]["extend"], {"extend-for": 10**6}, status=403)
    bob.publish(session, status=403)
    bob.delete(session["links"]["session"], status=403)
    assert alice.get(session["links"]["session"]).json == before
    assert alice.get(file["links"]["file-upload-session"]).json == file


def test_the_stage_needs_no_credentials(alice, bob, registered, testapp, dist_dir, dbsession):
    session = alice.create_session("foo", "2.0").json
    wheel = build_wheel(dist_dir, "foo", "2.0")
    alice.upload(session, wheel)
    for headers in ({}, bob.headers):
        index = testapp.get(session["links"]["stage"], headers=headers)
        assert index.status_int == 200
        page = testapp.get(session["links"]["stage"] + "foo/", headers=headers)
        link = page.html.find("a", string=wheel.name)["href"].split("#")[0]
        assert testapp.get(link, headers=headers).body == wheel.read_bytes()
    # Not even a revoked creator loses it: the token is the capability.
    revoke(dbsession, "alice", "foo")
    assert_problem(alice.get(session["links"]["session"], status=403), 403, "authorization")
    assert testapp.get(session["links"]["stage"] + "foo/", headers=alice.headers).status_int == 200
    # The status URL, by contrast, needs authorization.
    response = testapp.get(session["links"]["session"], status=401, headers={"Content-Type": CT})
    assert_problem(response, 401)
