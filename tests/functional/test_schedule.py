"""Scheduled publish (``vnd-upload2-publish-after``): the session waits in ``processing``, its
filenames reserved, until the beat task ``publish_due`` runs at that time (a frozen clock
here); an explicit unschedule brings it back to ``open``."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa
import time_machine

from pypi_upload2.builtin.models import Filename, ReleaseFile
from pypi_upload2.models import PublishingSession
from tests.conftest import Uploader, assert_problem, build_sdist, build_wheel, count, fetch
from tests.functional.test_deferred import run_task

KEY = "vnd-upload2-publish-after"


def rfc3339(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def app(make_app):
    return make_app(**{"upload2.scheduled_publish": "true"})


@pytest.fixture
def alice(app, make_user):
    return Uploader(app, make_user("alice"))


def staged(alice, dist_dir):
    session = alice.create_session().json
    for path in (build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0")):
        alice.upload(session, path)
    return session


def tuesday() -> datetime.datetime:
    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=5)).replace(microsecond=0)


def test_a_scheduled_publish_goes_public_at_its_time_and_not_before(app, alice, dist_dir, dbsession):
    session = staged(alice, dist_dir)
    when = tuesday()
    response = alice.post(session["links"]["publish"], {KEY: rfc3339(when)}, status=202)
    body = response.json
    assert body["status"] == "processing" and body[KEY] == rfc3339(when)
    assert body["links"]["vnd-upload2-unschedule"].endswith("/unschedule")
    assert body["expires-at"] >= rfc3339(when + datetime.timedelta(days=1))
    # The filenames are reserved now: no other door can take them meanwhile.
    assert count(dbsession, Filename) == 2
    assert alice.get(session["links"]["session"]).json[KEY] == rfc3339(when)

    with time_machine.travel(when - datetime.timedelta(minutes=1), tick=False):
        run_task(app.app, "publish_due")
        run_task(app.app, "resend_processing")  # the re-send sweep never publishes it early
    assert count(dbsession, ReleaseFile) == 0
    assert fetch(dbsession, PublishingSession, id=1).status == "processing"
    with time_machine.travel(when + datetime.timedelta(seconds=5), tick=False):
        run_task(app.app, "publish_due")
    assert count(dbsession, ReleaseFile) == 2
    done = alice.get(session["links"]["session"]).json
    assert done["status"] == "published" and KEY not in done


def test_cancel_waits_for_an_explicit_unschedule(alice, dist_dir, dbsession):
    session = staged(alice, dist_dir)
    alice.post(session["links"]["publish"], {KEY: rfc3339(tuesday())}, status=202)
    assert_problem(alice.delete(session["links"]["session"], status=409), 409, source="status")
    assert count(dbsession, Filename) == 2
    unscheduled = alice.post(session["links"]["session"] + "unschedule").json
    assert unscheduled["status"] == "open" and KEY not in unscheduled
    assert "vnd-upload2-unschedule" not in unscheduled["links"]
    assert count(dbsession, Filename) == 0
    assert_problem(alice.post(session["links"]["session"] + "unschedule", status=409), 409, source="status")
    assert alice.delete(session["links"]["session"]).json["status"] == "canceled"
    # The reservation was released: the same files may be published by a new session.
    again = staged(alice, dist_dir)
    alice.publish(again)
    assert count(dbsession, ReleaseFile) == 2


@pytest.mark.parametrize("value, why", [
    ("yesterday", "RFC 3339 time in UTC"),
    ("2030-01-01T14:00:00+01:00", "RFC 3339 time in UTC"),
    (20300101, "RFC 3339 time in UTC"),
    ("2020-01-01T00:00:00Z", "must be in the future"),
    ("2999-01-01T00:00:00Z", "the session's longest lifetime"),
])
def test_a_bad_time_is_refused_and_changes_nothing(alice, dist_dir, dbsession, value, why):
    session = staged(alice, dist_dir)
    body = assert_problem(alice.post(session["links"]["publish"], {KEY: value}, status=400), 400, source=KEY)
    assert why in body["detail"]
    assert fetch(dbsession, PublishingSession, id=1).status == "open"


def test_without_periodic_tasks_the_index_refuses_to_schedule(testapp, make_user, dist_dir, dbsession):
    alice = Uploader(testapp, make_user("alice"))  # the embedded default: no broker, no beat
    session = staged(alice, dist_dir)
    body = assert_problem(alice.post(session["links"]["publish"], {KEY: rfc3339(tuesday())}, status=422), 422,
                          source=KEY)
    assert "runs no periodic tasks" in body["detail"]
    assert fetch(dbsession, PublishingSession, id=1).status == "open"


def test_a_publish_failing_at_its_time_leaves_the_session_in_error(make_app, make_user, dist_dir, dbsession):
    app = make_app(**{"upload2.scheduled_publish": "true", "upload2.project_quota": "4000"})
    alice = Uploader(app, make_user("alice"))
    session = alice.create_session().json
    alice.upload(session, build_wheel(dist_dir, "foo", "1.0", padding=3000))
    when = tuesday()
    alice.post(session["links"]["publish"], {KEY: rfc3339(when)}, status=202)
    # Meanwhile another release fills the quota: the checks run at the scheduled time.
    other = alice.create_session("foo", "0.9").json
    alice.upload(other, build_wheel(dist_dir, "foo", "0.9", padding=1500))
    alice.publish(other)
    with time_machine.travel(when + datetime.timedelta(seconds=1), tick=False):
        run_task(app.app, "publish_due")
    body = alice.get(session["links"]["session"]).json
    assert body["status"] == "error" and any("quota" in n for n in body["notices"])
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(ReleaseFile)) == 1
    dbsession.commit()
