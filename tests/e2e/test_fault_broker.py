"""The broker stopped when a request must hand work to it: completing a resumable upload
(verification) and a deferred publish answer 503 with ``Retry-After`` and change nothing;
once Redis is back, the same requests succeed. Redis here is a server of the test's own."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from pypi_upload2.builtin.models import Filename
from tests.conftest import build_wheel
from tests.conftest import gunicorn
from tests.e2e.stack import own_redis, stack_ini  # noqa: F401
from tests.e2e.test_worker import Worker, call, send_rest, settled, start_resumable


@pytest.fixture
def ini(tmp_path, database_url, storage_dir, own_redis, dbsession):  # noqa: F811
    return stack_ini(tmp_path / "stack.ini", database_url, storage_dir, own_redis.url, publish_mode="deferred",
                     sweep_interval=1, processing_deadline=2)


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["status"] == 503


def test_complete_and_publish_wait_for_the_broker(ini, own_redis, tmp_path, make_user, dist_dir,  # noqa: F811
                                                   dbsession):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    worker = Worker(ini, tmp_path)
    with gunicorn(ini, "--workers", "2") as base, httpx.Client(auth=("__token__", make_user("alice")),
                                                               timeout=60) as client:
        session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
        upload = start_resumable(client, session, wheel)
        send_rest(client, upload, wheel.read_bytes(), 4096)

        own_redis.stop()
        assert_unavailable(call(client, upload["links"]["complete"]))
        assert client.get(upload["links"]["file-upload-session"]).json()["status"] == "pending"

        own_redis.start()
        worker.start()
        call(client, upload["links"]["complete"], expected=202)
        assert settled(client, upload["links"]["file-upload-session"])["status"] == "completed"

        worker.kill()
        own_redis.stop()
        assert_unavailable(call(client, session["links"]["publish"]))
        assert client.get(session["links"]["session"]).json()["status"] == "open"
        assert dbsession.scalars(sa.select(Filename.filename)).all() == []  # the reservation rolled back
        dbsession.rollback()

        own_redis.start()
        worker.start()
        try:
            call(client, session["links"]["publish"], expected=202)
            assert settled(client, session["links"]["session"])["status"] == "published"
        finally:
            worker.kill()
