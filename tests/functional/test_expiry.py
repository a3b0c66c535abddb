"""Expiry and retention, the periodic tasks beat runs (here eager, through the real task
machinery), observed through WebTest on a real database and real files."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa

from pypi_upload2.models import FileUploadSession, NameReservation, PublishingSession
from pypi_upload2.builtin.models import Project
from pypi_upload2.states import PublishingStatus
from tests.conftest import build_wheel
from tests.functional.test_deferred import fetch, run_task, update
from tests.functional.test_resumable import patch, start


def ago(**delta) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(**delta)


def stored(storage_dir) -> list:
    return sorted(p for p in storage_dir.rglob("*") if p.is_file())


def expire(dbsession, session: dict) -> None:
    update(dbsession, PublishingSession, {"expires_at": ago(minutes=1)}, token=session["session-token"])


@pytest.mark.local_storage
def test_an_expired_session_is_canceled_its_bytes_purged_and_its_new_name_freed(alice, bob, testapp, dist_dir,
                                                                                 dbsession, storage_dir):
    session = alice.create_session("newname", "1.0").json
    alice.upload(session, build_wheel(dist_dir, "newname", "1.0"))
    assert stored(storage_dir)
    # bob may not take the name while alice's session holds it.
    bob.create_session("newname", "1.0", status=403)
    assert [r.normalized_name for r in fetch(dbsession, sa.select(NameReservation))] == ["newname"]
    expire(dbsession, session)
    run_task(testapp.app, "expire_sessions")
    status = alice.get(session["links"]["session"]).json
    assert status["status"] == "canceled"
    assert status["notices"] == ["Canceled by the server: the session expired."]
    assert stored(storage_dir) == []
    assert fetch(dbsession, sa.select(Project)) == []
    assert fetch(dbsession, sa.select(NameReservation)) == []
    assert bob.create_session("newname", "1.0").status_int == 201


def test_sessions_in_error_expire_too_but_not_live_or_processing_ones(alice, testapp, dbsession):
    sessions = {status: alice.create_session("foo", f"1.{n}").json for n, status in enumerate(
        (PublishingStatus.OPEN, PublishingStatus.ERROR, PublishingStatus.PROCESSING))}
    fresh = alice.create_session("foo", "2.0").json
    for status, session in sessions.items():
        update(dbsession, PublishingSession, {"status": status, "expires_at": ago(seconds=1)},
               token=session["session-token"])
    run_task(testapp.app, "expire_sessions")
    statuses = {s: alice.get(session["links"]["session"]).json["status"] for s, session in sessions.items()}
    assert statuses == {PublishingStatus.OPEN: "canceled", PublishingStatus.ERROR: "canceled",
                        PublishingStatus.PROCESSING: "processing"}
    assert alice.get(fresh["links"]["session"]).json["status"] == "open"


@pytest.mark.local_storage
def test_a_pending_upload_past_its_own_expiry_is_canceled(alice, testapp, dist_dir, dbsession, storage_dir):
    session = alice.create_session("foo", "1.0").json
    done = build_wheel(dist_dir, "foo", "1.0")
    alice.upload(session, done)
    slow = build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any")
    upload = start(alice, session, slow)
    patch(alice, upload, slow.read_bytes()[:1000], 0, False)
    update(dbsession, FileUploadSession, {"expires_at": ago(seconds=1)})  # both files' own expiry passed
    run_task(testapp.app, "expire_sessions")
    status = alice.get(upload["links"]["file-upload-session"]).json
    assert status["status"] == "canceled"
    assert status["notices"] == ["Canceled by the server: the upload expired."]
    files = alice.get(session["links"]["session"]).json["files"]
    assert list(files) == [done.name] and files[done.name]["status"] == "completed"
    done_id = files[done.name]["link"].rstrip("/").rsplit("/", 1)[1]
    assert [p.name for p in stored(storage_dir)] == [done_id, f"{done_id}.metadata"]


def test_ended_sessions_are_forgotten_after_the_retention_period(alice, testapp, dist_dir, dbsession):
    published = alice.create_session("foo", "1.0").json
    wheel = build_wheel(dist_dir, "foo", "1.0")
    alice.upload(published, wheel)
    alice.publish(published)
    canceled = alice.create_session("foo", "2.0").json
    alice.delete(canceled["links"]["session"])
    recent = alice.create_session("foo", "3.0").json
    alice.delete(recent["links"]["session"])
    for session in (published, canceled):
        update(dbsession, PublishingSession, {"ended_at": ago(days=8)}, token=session["session-token"])
    run_task(testapp.app, "purge_ended_sessions")
    alice.get(published["links"]["session"], status=404)
    alice.get(canceled["links"]["session"], status=404)
    assert alice.get(recent["links"]["session"]).json["status"] == "canceled"
    # The release stays public, its file downloadable; the version can take a new session.
    link = testapp.get("/simple/foo/").html.find("a", string=wheel.name)["href"].split("#")[0]
    assert testapp.get(link).body == wheel.read_bytes()
    assert alice.create_session("foo", "2.0").status_int == 201


def test_a_session_a_request_holds_is_skipped_then_expired_by_the_next_run(is_postgresql, alice, testapp,
                                                                          engine, dbsession):
    if not is_postgresql:
        pytest.skip("needs PostgreSQL (UPLOAD2_TEST_DATABASE_URL)")
    held, free = alice.create_session("foo", "1.0").json, alice.create_session("foo", "2.0").json
    expire(dbsession, held)
    expire(dbsession, free)
    # A publish (or another worker's sweep) holds one session's row: the sweep takes the other.
    with engine.connect() as other:
        other.execute(sa.select(PublishingSession.id).where(
            PublishingSession.token == held["session-token"]).with_for_update())
        run_task(testapp.app, "expire_sessions")
        assert alice.get(free["links"]["session"]).json["status"] == "canceled"
        assert alice.get(held["links"]["session"]).json["status"] == "open"
        other.rollback()
    run_task(testapp.app, "expire_sessions")
    assert alice.get(held["links"]["session"]).json["status"] == "canceled"
