"""Waiting on an index that is slow to finish: a deferred publish or a deferred file
verification with a Celery broker and no worker stays ``processing``. The client says so
while it waits, stops after ``--wait-timeout`` with exit status 3 and the commands to
resume, and ``session publish`` picks the session up once a worker has done its part."""

from __future__ import annotations

import os

import httpx
import pytest
import sqlalchemy as sa

from pypi_upload2.models import FileUploadSession, PublishingSession
from tests.conftest import build_wheel
from tests.e2e.test_client_upload import client_env, make_server, published, run_client, run_json  # noqa: F401

TIMED_OUT = 3


@pytest.fixture
def broker():
    """A Redis database that no worker reads: every task sent to it waits there."""
    redis = pytest.importorskip("redis")
    url = os.environ.get("UPLOAD2_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        pytest.skip(f"needs Redis at {url} (UPLOAD2_TEST_REDIS_URL): {exc}")
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def no_worker(make_server, broker):
    """A server that defers publishing (and resumable verification) to a worker that never runs."""
    return make_server({"upload2.publish_mode": "deferred", "celery.broker_url": broker})


def run_task(wsgi_app, name: str, *args) -> None:
    """Do a worker's part: the task, run in process (``wsgi_app`` has no broker: eager)."""
    wsgi_app.registry["upload2.celery"].tasks[f"pypi_upload2.{name}"].delay(*args)


def session_id(dbsession, url: str) -> int:
    token = url.rstrip("/").rsplit("/", 1)[1]
    dbsession.expire_all()
    found = dbsession.scalar(sa.select(PublishingSession.id).where(PublishingSession.token == token))
    dbsession.commit()
    return found


def test_a_publish_no_worker_runs_stops_after_the_wait_timeout_and_session_publish_resumes(
        no_worker, make_user, dist_dir, tmp_path, wsgi_app, dbsession):
    env = client_env(tmp_path, make_user("alice"))
    wheel = build_wheel(dist_dir, "foo", "1.0")

    done = run_client(["upload", "--repository-url", f"{no_worker}/legacy/", "--wait-timeout", "2", wheel], env,
                      timeout=60)

    assert done.returncode == TIMED_OUT, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "foo 1.0: publishing; waiting up to 2s (--wait-timeout)" in lines
    url = next(line.split(": ", 1)[1] for line in lines if line.startswith("foo 1.0: session "))[len("session "):]
    assert any(line.startswith("error: foo 1.0: still processing after 2s (--wait-timeout)") for line in lines)
    assert lines[lines.index("foo 1.0 is not published yet:") + 1] == f"  session: {url}"
    assert f"  status:  pypi-upload2 session status {url}" in lines
    assert f"  resume:  pypi-upload2 session publish {url}   (waits, then publishes)" in lines
    assert "canceled" not in done.stdout  # nothing failed: the session is left to the index
    assert httpx.get(url, auth=("__token__", env["UPLOAD2_TOKEN"])).json()["status"] == "processing"

    # `session publish` on a processing session only waits: it does not publish it twice.
    report = run_json(["session", "publish", url, "--wait-timeout", "1"], env, expect=TIMED_OUT)
    assert report["timed-out"] is True and report["ok"] is False
    assert report["session"]["status"] == "processing"
    assert report["error"]["status"] is None
    assert report["error"]["title"] == "the session: still processing after 1s (--wait-timeout)"
    assert f"pypi-upload2 session publish {url}" in report["error"]["detail"]

    run_task(wsgi_app, "publish_session", session_id(dbsession, url))
    resumed = run_client(["session", "publish", url], env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "status:     published" in resumed.stdout.splitlines()
    assert published(no_worker, "foo") == {wheel.name: wheel.read_bytes()}


def test_the_json_result_of_a_timed_out_upload_says_so(no_worker, make_user, dist_dir, tmp_path):
    env = client_env(tmp_path, make_user("alice"))
    wheel = build_wheel(dist_dir, "foo", "1.0")

    report = run_json(["upload", "--repository-url", f"{no_worker}/legacy/", "--wait-timeout", "1", wheel], env,
                      expect=TIMED_OUT)

    assert (report["ok"], report["timed-out"]) == (False, True)
    (session,) = report["sessions"]
    assert session["status"] == "processing" and session["files"][0]["status"] == "completed"
    error = report["error"]
    assert set(error) == {"status", "title", "detail", "errors"} and error["status"] is None
    assert error["title"].startswith("foo 1.0: still processing after 1s (--wait-timeout)")
    assert f"pypi-upload2 session publish {session['session']}" in error["detail"]


def test_a_file_verification_no_worker_runs_stops_after_the_wait_timeout(
        no_worker, make_user, dist_dir, tmp_path, wsgi_app, dbsession):
    env = client_env(tmp_path, make_user("alice"))
    wheel = build_wheel(dist_dir, "foo", "1.0", padding=100_000)

    # The resumable mechanism's completion is deferred: the server hashes the file in a task.
    report = run_json(["upload", "--repository-url", f"{no_worker}/legacy/", "--resumable", "--wait-timeout", "1",
                       wheel], env, expect=TIMED_OUT)

    assert report["timed-out"] is True
    (session,) = report["sessions"]
    (entry,) = session["files"]
    assert entry["status"] == "processing"
    assert entry["error"]["title"] == f"{wheel.name}: still processing after 1s (--wait-timeout)"
    assert report["error"]["title"] == (f"1 of 1 file still processing after 1s (--wait-timeout): {wheel.name}; "
                                        "nothing was published")
    url = session["session"]
    assert session["status"] == "open"  # kept for a resume, not canceled
    assert f"pypi-upload2 session publish {url}" in report["error"]["detail"]

    # The file is still being verified: `session publish` waits for it before publishing.
    waiting = run_client(["session", "publish", url, "--wait-timeout", "1"], env)
    assert waiting.returncode == TIMED_OUT, waiting.stdout + waiting.stderr
    assert "the session: files are still being verified; waiting up to 1s (--wait-timeout)" in waiting.stdout

    dbsession.expire_all()
    (file_id,) = dbsession.scalars(sa.select(FileUploadSession.id)).all()
    dbsession.commit()
    run_task(wsgi_app, "verify_file", file_id)
    # Now the publish itself is deferred to the missing worker: one more wait, then the task.
    again = run_json(["session", "publish", url, "--wait-timeout", "1"], env, expect=TIMED_OUT)
    assert again["session"]["status"] == "processing"
    assert again["session"]["files"][wheel.name]["status"] == "completed"
    run_task(wsgi_app, "publish_session", session_id(dbsession, url))
    assert run_json(["session", "publish", url], env)["session"]["status"] == "published"
    assert published(no_worker, "foo") == {wheel.name: wheel.read_bytes()}


def test_no_wait_timeout_is_needed_when_the_index_settles_in_time(server, make_user, dist_dir, tmp_path):
    env = client_env(tmp_path, make_user("alice"))
    wheel = build_wheel(dist_dir, "foo", "1.0")
    report = run_json(["upload", "--repository-url", f"{server}/legacy/", "--wait-timeout", "0", wheel], env)
    assert (report["ok"], report["timed-out"], report["error"]) == (True, False, None)
    assert report["sessions"][0]["status"] == "published"
