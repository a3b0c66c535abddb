"""Deferred work in the embedded default (eager tasks, through WebTest): tasks are sent only
after the request commits, the resumable mechanism's final-chunk verification (202, then
completed or error), deferred publish (202, reservations, publish checks, error with
notices, retry), and the periodic re-send of work stuck in ``processing``."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import os

import pytest
import sqlalchemy as sa
import webtest
from pyramid.config import Configurator
from pyramid.response import Response

from pypi_upload2 import main, tasks
from pypi_upload2.interfaces import ITaskQueue
from pypi_upload2.services import digests, files
from pypi_upload2.services.digests import ResumableDigests
from pypi_upload2.services.streaming import copy_hashing as real_copy_hashing
from pypi_upload2.models import FileUploadSession, PublishingSession
from pypi_upload2.builtin.models import Filename, Release, ReleaseFile
from pypi_upload2.states import FileStatus, PublishingStatus
from tests.artifacts import sha256_file
from tests.conftest import Uploader, assert_problem, build_sdist, build_wheel
from tests.functional.test_resumable import interrupted_patch, patch, send_all, start, upload_resumable

VERIFYING = "verifying"
needs_rehashes = pytest.mark.skipif(digests.rehashes is None, reason="rehashes is not installed (Linux only)")


def run_task(app, name: str, *args) -> None:
    """Run a task as a worker (or beat) would: the request-carrying task, in eager mode."""
    app.registry["upload2.celery"].tasks[f"pypi_upload2.{name}"].delay(*args)


def file_id(upload: dict) -> int:
    return int(upload["links"]["file-upload-session"].rstrip("/").rsplit("/", 1)[1])


def update(dbsession, model, values: dict, **where) -> None:
    """Arrange a row the way a worker that died (or a lost message) leaves it."""
    dbsession.execute(sa.update(model).filter_by(**where).values(**values))
    dbsession.commit()


def fetch(dbsession, query):
    dbsession.expire_all()
    result = dbsession.scalars(query).all()
    dbsession.commit()  # no transaction left open: SQLite writers queue on it
    return result


def long_ago() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)


def just_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@pytest.fixture
def wheel(dist_dir):
    return build_wheel(dist_dir, "foo", "1.0", padding=20_000)


def verifications(caplog) -> int:
    return sum(1 for r in caplog.records if r.name == "pypi_upload2.services.files" and VERIFYING in r.message)


# -- tasks leave with the commit, never before ---------------------------------------------------

def enqueue_then(request):
    """A host view: enqueue a verification, then end as the URL says."""
    request.find_service(ITaskQueue).enqueue("verify_file", int(request.matchdict["file_id"]))
    if request.matchdict["outcome"] == "fail":
        raise LookupError("the request fails after enqueueing")
    return Response("enqueued")


@pytest.fixture
def make_host(settings, dbsession):
    apps = []

    def make(**extra):
        with Configurator(settings={**settings, "tm.manager_hook": "pyramid_tm.explicit_manager", **extra}) as config:
            config.include("pypi_upload2")
            config.add_route("enqueue", "/enqueue/{file_id}/{outcome}")
            config.add_view(enqueue_then, route_name="enqueue")
        apps.append(config.make_wsgi_app())
        return webtest.TestApp(apps[-1])

    yield make
    for app in apps:
        app.registry["upload2.engine"].dispose()


def processing_upload(app, token, dbsession, path) -> dict:
    """A resumable upload, every byte sent, left processing as if its message was lost."""
    uploader = Uploader(app, token)
    session = uploader.create_session("foo", "1.0").json
    upload = start(uploader, session, path)
    send_all(uploader, upload, path.read_bytes(), 8192)
    update(dbsession, FileUploadSession, {"status": FileStatus.PROCESSING}, id=file_id(upload))
    return upload


def test_a_task_is_sent_once_after_commit_and_never_when_the_request_aborts(make_host, make_user, dbsession,
                                                                            wheel, caplog):
    caplog.set_level(logging.INFO, logger="pypi_upload2")
    app = make_host()
    token = make_user("alice")
    upload = processing_upload(app, token, dbsession, wheel)
    status_url = upload["links"]["file-upload-session"]
    with pytest.raises(LookupError):
        app.get(f"/enqueue/{file_id(upload)}/fail")
    assert verifications(caplog) == 0
    assert Uploader(app, token).get(status_url).json["status"] == "processing"
    app.get(f"/enqueue/{file_id(upload)}/commit")
    assert verifications(caplog) == 1
    assert Uploader(app, token).get(status_url).json["status"] == "completed"


@pytest.fixture
def redis_url():
    url = os.environ.get("UPLOAD2_TEST_REDIS_URL")
    if not url or not os.environ.get("UPLOAD2_TEST_DATABASE_URL"):
        pytest.skip("needs Redis and PostgreSQL (UPLOAD2_TEST_REDIS_URL, UPLOAD2_TEST_DATABASE_URL)")
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()  # the test database of this Redis (CI uses db 15)
    yield url
    client.flushdb()
    client.close()


def test_with_a_broker_the_message_leaves_only_after_commit(make_host, make_user, dbsession, wheel, redis_url):
    import redis

    app = make_host(**{"celery.broker_url": redis_url})
    queue = redis.Redis.from_url(redis_url)
    upload = processing_upload(app, make_user("alice"), dbsession, wheel)
    with pytest.raises(LookupError):
        app.get(f"/enqueue/{file_id(upload)}/fail")
    assert queue.llen("upload2") == 0
    app.get(f"/enqueue/{file_id(upload)}/commit")
    assert queue.llen("upload2") == 1
    message = json.loads(queue.lindex("upload2", 0))
    assert message["headers"]["task"] == "pypi_upload2.verify_file"
    assert json.loads(base64.b64decode(message["body"]))[0] == [file_id(upload)]
    queue.close()


# -- final-chunk verification ---------------------------------------------------------------------

def test_completion_is_deferred_to_a_task_that_verifies_the_assembled_file(alice, wheel, caplog):
    caplog.set_level(logging.INFO, logger="pypi_upload2")
    session = alice.create_session("foo", "1.0").json
    upload = start(alice, session, wheel)
    send_all(alice, upload, wheel.read_bytes(), 7000)
    response = alice.post(upload["links"]["complete"], status=202)
    assert response.json["status"] == "processing"
    assert response.headers["Location"] == upload["links"]["file-upload-session"]
    assert int(response.headers["Retry-After"]) >= 1
    assert verifications(caplog) == 1
    status = alice.get(upload["links"]["file-upload-session"])
    assert status.json["status"] == "completed"
    assert "Retry-After" in status.headers
    assert alice.get(session["links"]["session"]).json["files"][wheel.name]["status"] == "completed"


def test_a_wrong_hash_ends_in_error_with_a_notice_and_no_bytes(alice, wheel, storage_dir):
    session = alice.create_session("foo", "1.0").json
    completed = upload_resumable(alice, session, wheel, hashes={"sha256": "0" * 64})
    assert completed["status"] == "processing"
    status = alice.get(completed["links"]["file-upload-session"]).json
    assert status["status"] == "error"
    assert "sha256 mismatch" in status["notices"][0]
    assert not [p for p in storage_dir.rglob("*") if p.is_file()]
    # From error the only way on is to delete the file.
    alice.delete(completed["links"]["file-upload-session"], status=204)


def digest_state(dbsession, upload: dict) -> tuple[int, str | None]:
    """The offset and the sha256 its stored digest state resumes to."""
    row = fetch(dbsession, sa.select(FileUploadSession).where(FileUploadSession.id == file_id(upload)))[0]
    resumed = ResumableDigests.resume(row.digest_state)
    return row.received_size, resumed.hexdigests()["sha256"] if resumed else None


@needs_rehashes
def test_each_append_stores_the_digest_state_of_exactly_the_bytes_received(alice, wheel, dbsession):
    data = wheel.read_bytes()
    session = alice.create_session("foo", "1.0").json
    upload = start(alice, session, wheel)
    patch(alice, upload, data[:5000], 0, False)
    assert digest_state(dbsession, upload) == (5000, hashlib.sha256(data[:5000]).hexdigest())
    # A refused append (wrong offset) and an interrupted one change the state as they change the offset.
    patch(alice, upload, data[:100], 100, False, status=409)
    assert digest_state(dbsession, upload) == (5000, hashlib.sha256(data[:5000]).hexdigest())
    assert interrupted_patch(alice, upload, data[5000:9000], len(data) - 5000, 5000).status_int == 204
    assert digest_state(dbsession, upload) == (9000, hashlib.sha256(data[:9000]).hexdigest())
    patch(alice, upload, data[9000:], 9000, True)
    assert digest_state(dbsession, upload) == (len(data), hashlib.sha256(data).hexdigest())
    alice.post(upload["links"]["complete"], status=202)
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "completed"
    assert fetch(dbsession, sa.select(FileUploadSession.digest_state)) == [None]  # done with


@needs_rehashes
def test_verification_takes_the_appends_digests_and_reads_nothing_back(alice, wheel, monkeypatch):
    def no_rehash(*args):
        raise AssertionError("the assembled file was hashed again")

    monkeypatch.setattr(files, "copy_hashing", no_rehash)
    data = wheel.read_bytes()
    session = alice.create_session("foo", "1.0").json
    completed = upload_resumable(alice, session, wheel, hashes={"sha256": sha256_file(wheel),
                                                                 "sha512": hashlib.sha512(data).hexdigest()})
    assert alice.get(completed["links"]["file-upload-session"]).json["status"] == "completed"
    other = wheel.rename(wheel.with_name("foo-1.0-py2-none-any.whl"))
    wrong = upload_resumable(alice, session, other, hashes={"sha256": sha256_file(other), "md5": "0" * 32})
    status = alice.get(wrong["links"]["file-upload-session"]).json
    assert status["status"] == "error"
    assert "md5 mismatch" in status["notices"][0]


@pytest.mark.parametrize("case", ["algorithm", "unreadable", "no rehashes"])
def test_without_usable_digests_the_task_hashes_the_assembled_file(case, alice, wheel, dbsession, monkeypatch, caplog):
    data = wheel.read_bytes()
    hashes = {"sha256": hashlib.sha256(data).hexdigest()}
    if case == "algorithm":  # rehashes cannot resume blake2b: every digest comes from the task
        hashes["blake2b"] = hashlib.blake2b(data).hexdigest()
    if case == "no rehashes":
        monkeypatch.setattr(digests, "rehashes", None)
    session = alice.create_session("foo", "1.0").json
    upload = start(alice, session, wheel, hashes=hashes)
    send_all(alice, upload, data, 6000)
    if case == "unreadable":  # e.g. written by another version of the hashing library
        update(dbsession, FileUploadSession, {"digest_state": {"sha256": "AAAA"}}, id=file_id(upload))
    else:
        assert digest_state(dbsession, upload) == (len(data), None)
    rehashed = []
    monkeypatch.setattr(files, "copy_hashing", lambda *args: rehashed.append(args[3]) or real_copy_hashing(*args))
    alice.post(upload["links"]["complete"], status=202)
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "completed"
    assert rehashed == [len(data)]


def test_a_file_that_is_no_distribution_ends_in_error(alice, dist_dir):
    path = dist_dir / "foo-1.0-py3-none-any.whl"
    path.write_bytes(b"not a zip archive" * 100)
    session = alice.create_session("foo", "1.0").json
    upload_resumable(alice, session, path)
    status = alice.get(session["links"]["session"]).json["files"][path.name]
    assert status["status"] == "error"
    assert "not a valid wheel" in status["notices"][0]


def test_delete_while_processing_is_409(alice, wheel, dbsession):
    session = alice.create_session("foo", "1.0").json
    upload = start(alice, session, wheel)
    send_all(alice, upload, wheel.read_bytes(), 8192)
    update(dbsession, FileUploadSession, {"status": FileStatus.PROCESSING}, id=file_id(upload))
    assert_problem(alice.delete(upload["links"]["file-upload-session"], status=409), 409, "status")
    assert_problem(alice.post(session["links"]["publish"], status=409), 409, wheel.name)
    # Canceling the whole session is never refused for a file being processed.
    alice.delete(session["links"]["session"])
    assert alice.get(session["links"]["session"]).json["status"] == "canceled"


def test_a_verification_settled_meanwhile_is_left_as_it_is(alice, wheel, dbsession, testapp, storage_dir):
    session = alice.create_session("foo", "1.0").json
    upload = start(alice, session, wheel)
    send_all(alice, upload, wheel.read_bytes(), 8192)
    update(dbsession, FileUploadSession, {"status": FileStatus.PROCESSING}, id=file_id(upload))
    alice.delete(session["links"]["session"])
    # The message of the canceled file arrives late: the verification changes nothing, keeps nothing.
    run_task(testapp.app, "verify_file", file_id(upload))
    [row] = fetch(dbsession, sa.select(FileUploadSession))
    assert row.status == FileStatus.CANCELED and row.received_hashes is None
    assert not [p for p in storage_dir.rglob("*") if p.is_file()]


def test_a_verification_stuck_past_the_deadline_is_sent_again(alice, wheel, dbsession, testapp, caplog):
    caplog.set_level(logging.INFO, logger="pypi_upload2")
    session = alice.create_session("foo", "1.0").json
    stuck, recent = start(alice, session, wheel), None
    send_all(alice, stuck, wheel.read_bytes(), 8192)
    other = build_wheel(wheel.parent, "foo", "1.0", tag="py2-none-any")
    recent = start(alice, session, other)
    send_all(alice, recent, other.read_bytes(), 8192)
    update(dbsession, FileUploadSession, {"status": FileStatus.PROCESSING, "processing_since": long_ago()},
           id=file_id(stuck))
    # The deadline counts from when processing began, not from when the last byte arrived.
    update(dbsession, FileUploadSession, {"status": FileStatus.PROCESSING, "processing_since": just_now(),
                                          "received_at": long_ago()}, id=file_id(recent))
    run_task(testapp.app, "resend_processing")
    assert verifications(caplog) == 1
    assert alice.get(stuck["links"]["file-upload-session"]).json["status"] == "completed"
    # Within the deadline its worker may still be at it: left alone.
    assert alice.get(recent["links"]["file-upload-session"]).json["status"] == "processing"


# -- deferred publish ---------------------------------------------------------------------------

@pytest.fixture
def deferred(settings, make_user):
    apps = []

    def make(**extra) -> Uploader:
        apps.append(webtest.TestApp(main({}, **settings, **{"upload2.publish_mode": "deferred", **extra})))
        return Uploader(apps[-1], make_user("alice"))

    yield make
    for app in apps:
        app.app.registry["upload2.engine"].dispose()


def staged(uploader: Uploader, *paths, version="1.0") -> dict:
    session = uploader.create_session("foo", version).json
    for path in paths:
        uploader.upload(session, path)
    return session


def reservations(dbsession) -> list[str]:
    """Filenames a publish in progress holds: reserved in the registry, not published."""
    published = sa.select(ReleaseFile.filename)
    return sorted(fetch(dbsession, sa.select(Filename.filename).where(Filename.filename.not_in(published))))


def publish_held_back(uploader: Uploader, session: dict, monkeypatch) -> int:
    """A deferred publish the request accepted (202, filenames reserved) whose task has not
    run yet (a worker's backlog, a lost message); returns the session's id."""
    with monkeypatch.context() as held_back:
        held_back.setattr(tasks, "_send", lambda committed, task, args: None)
        assert uploader.publish(session, status=202).json["status"] == "processing"
    assert uploader.get(session["links"]["session"]).json["status"] == "processing"
    db = uploader.app.app.registry["upload2.engine"]
    with db.connect() as conn:
        return conn.scalar(sa.select(PublishingSession.id).where(
            PublishingSession.status == PublishingStatus.PROCESSING))


def test_a_deferred_publish_answers_202_and_a_task_publishes(deferred, dist_dir, dbsession):
    alice = deferred()
    paths = [build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0")]
    session = staged(alice, *paths)
    response = alice.publish(session, status=202)
    assert response.json["status"] == "processing"
    assert response.headers["Location"] == session["links"]["session"]
    assert int(response.headers["Retry-After"]) >= 1
    assert alice.get(session["links"]["session"]).json["status"] == "published"
    page = alice.app.get("/simple/foo/")
    assert sorted(a.text for a in page.html.find_all("a")) == sorted(p.name for p in paths)
    assert reservations(dbsession) == []


def test_a_publish_in_processing_refuses_cancel_and_edits(deferred, wheel, dbsession, dist_dir):
    alice = deferred()
    session = staged(alice, wheel)
    update(dbsession, PublishingSession, {"status": PublishingStatus.PROCESSING})
    assert_problem(alice.delete(session["links"]["session"], status=409), 409, "status")
    assert_problem(alice.publish(session, status=409), 409, "status")
    alice.start_file(session, build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any"), status=409)


def test_a_conflict_found_by_the_task_ends_in_error_with_notices_then_a_fix_publishes(deferred, dist_dir, dbsession,
                                                                                      monkeypatch):
    alice = deferred()
    first = staged(alice, build_wheel(dist_dir, "foo", "1.0"))
    alice.publish(first, status=202)
    assert alice.get(first["links"]["session"]).json["status"] == "published"
    taken, other = build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any")
    session = staged(alice, taken, other)
    # The request reserves the filenames; before its task runs, the index publishes an sdist
    # of the release another way (a door of the host's), which the task's publish then hits.
    session_id = publish_held_back(alice, session, monkeypatch)
    assert reservations(dbsession) == sorted([taken.name, other.name])
    [release_id] = fetch(dbsession, sa.select(Release.id))
    dbsession.add_all([Filename(filename="Foo-1.0.tar.gz"),
                       ReleaseFile(release_id=release_id, filename="Foo-1.0.tar.gz", packagetype="sdist", size=1,
                                   sha256="0" * 64, blob_key="elsewhere", published_at=long_ago())])
    dbsession.commit()
    run_task(alice.app.app, "publish_session", session_id)
    status = alice.get(session["links"]["session"]).json
    assert status["status"] == "error"
    assert any(taken.name in notice for notice in status["notices"])
    assert status["files"][taken.name]["notices"] and not status["files"][other.name]["notices"]
    assert reservations(dbsession) == []  # released: the other file's name is free again
    assert other.name not in alice.app.get("/simple/foo/").text
    # The session is editable: drop the conflicting file, publish again.
    alice.delete(status["files"][taken.name]["link"], status=204)
    alice.publish(session, status=202)
    final = alice.get(session["links"]["session"]).json
    assert (final["status"], final["notices"]) == ("published", [])
    assert other.name in alice.app.get("/simple/foo/").text


def reject_py2(request, session, files):
    """A publish check of the kind a scanner would be: it blames files one by one."""
    for f in files:
        if "-py2-" in f.filename:
            yield f.filename, "py2 wheels are not accepted here"


def test_a_publish_check_can_fail_the_publish_with_per_file_notices(deferred, dist_dir):
    alice = deferred(**{"upload2.publish_checks": "pypi_upload2.builtin.checks.project_quota "
                                                  "tests.functional.test_deferred.reject_py2"})
    good, bad = build_wheel(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any")
    session = staged(alice, good, bad)
    alice.publish(session, status=202)
    status = alice.get(session["links"]["session"]).json
    assert status["status"] == "error"
    assert status["notices"] == [f"Publish failed: {bad.name}: py2 wheels are not accepted here"]
    assert status["files"][bad.name]["notices"] == ["Publish failed: py2 wheels are not accepted here"]
    alice.delete(status["files"][bad.name]["link"], status=204)
    alice.publish(session, status=202)
    assert alice.get(session["links"]["session"]).json["status"] == "published"


def test_a_failed_check_in_a_synchronous_publish_is_422_and_changes_nothing(settings, make_user, dist_dir):
    app = webtest.TestApp(main({}, **settings, **{"upload2.publish_checks": "tests.functional.test_deferred.reject_py2"}))
    alice = Uploader(app, make_user("alice"))
    session = staged(alice, build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any"))
    assert_problem(alice.publish(session, status=422), 422, "foo-1.0-py2-none-any.whl")
    assert alice.get(session["links"]["session"]).json["status"] == "open"
    app.app.registry["upload2.engine"].dispose()


def test_the_quota_check_fails_a_publish_that_would_exceed_it(deferred, wheel):
    alice = deferred(**{"upload2.project_quota": str(wheel.stat().st_size - 1)})
    session = staged(alice, wheel)
    alice.publish(session, status=202)
    status = alice.get(session["links"]["session"]).json
    assert status["status"] == "error"
    assert "quota" in status["notices"][0]


@pytest.mark.local_storage
def test_the_metadata_check_catches_stored_metadata_that_disagrees(deferred, wheel, dbsession, storage_dir):
    alice = deferred()
    session = staged(alice, wheel)
    [f] = fetch(dbsession, sa.select(FileUploadSession))
    (storage_dir / f.metadata_key).write_bytes(b"Metadata-Version: 2.1\nName: bar\nVersion: 1.0\n\n")
    alice.publish(session, status=202)
    status = alice.get(session["links"]["session"]).json
    assert status["status"] == "error"
    assert "names project 'bar'" in status["files"][wheel.name]["notices"][0]


def test_a_publish_stuck_past_the_deadline_is_sent_again_and_finishes_its_reservations(deferred, wheel, dbsession,
                                                                                        monkeypatch):
    alice = deferred()
    session = staged(alice, wheel)
    # The request reserved the filename, then its message was lost (or its worker died).
    session_id = publish_held_back(alice, session, monkeypatch)
    assert reservations(dbsession) == [wheel.name]
    # Within the deadline (counted from processing_since) its worker may still be at it.
    run_task(alice.app.app, "resend_processing")
    assert alice.get(session["links"]["session"]).json["status"] == "processing"
    update(dbsession, PublishingSession, {"processing_since": long_ago()}, id=session_id)
    assert alice.app.get("/simple/foo/", status=404)
    run_task(alice.app.app, "resend_processing")
    assert alice.get(session["links"]["session"]).json["status"] == "published"
    [row] = fetch(dbsession, sa.select(ReleaseFile))
    assert row.published_at is not None and row.publishing_session_id == session_id
    assert reservations(dbsession) == []
    assert wheel.name in alice.app.get("/simple/foo/").text
    # A duplicate of the message finds the work done.
    run_task(alice.app.app, "publish_session", session_id)
    assert len(fetch(dbsession, sa.select(ReleaseFile))) == 1
