"""A Celery worker SIGKILLed during a deferred publish: held at the publish's last statement
by a row lock the test holds, then killed with its pool and beat. Nothing it did remains,
the session stays ``processing`` only until the re-send deadline (2 s here) after a worker
runs again, and the session ends published, its file published once. (A worker killed
during verification: ``test_worker.py``.)"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from pypi_upload2.builtin.models import Filename, ReleaseFile
from pypi_upload2.models import NameReservation, PublishingSession
from tests.conftest import build_wheel
from tests.e2e.stack import own_redis  # noqa: F401
from tests.e2e.test_worker import (base, call, client, ini, send_rest, settled, start_resumable,  # noqa: F401
                                   token, waiting_on_a_lock, wait_until, worker)


@pytest.fixture
def redis_url(own_redis):  # noqa: F811
    return own_redis.url  # a broker of this test's own: no other run's worker takes its tasks


def test_a_worker_killed_mid_publish_leaves_work_a_restarted_worker_finishes(worker, base, client, dist_dir,  # noqa: F811
                                                                            engine, dbsession):
    wheel = build_wheel(dist_dir, "newname", "1.0")
    session = call(client, base + "/2.0/", {"name": "newname", "version": "1.0"}, 201).json()
    upload = start_resumable(client, session, wheel)
    send_rest(client, upload, wheel.read_bytes(), 4096)
    call(client, upload["links"]["complete"], expected=202)
    assert settled(client, upload["links"]["file-upload-session"])["status"] == "completed"
    with engine.connect() as holder:
        # The task's publish ends by dropping the new name's reservation: hold that row.
        holder.execute(sa.select(NameReservation).with_for_update())
        call(client, session["links"]["publish"], expected=202)
        wait_until(lambda: waiting_on_a_lock(dbsession), what="the worker to reach the end of its publish")
        worker.kill()
        holder.rollback()
    assert dbsession.scalar(sa.select(PublishingSession.status)) == "processing"
    assert dbsession.scalars(sa.select(ReleaseFile)).all() == []  # the killed worker published nothing
    dbsession.rollback()

    restarted = time.monotonic()
    worker.start()
    assert settled(client, session["links"]["session"])["status"] == "published"
    # The deadline (2 s) and one sweep (1 s) after the restart, with room for a slow machine.
    assert time.monotonic() - restarted < 30
    assert b"re-sent 0 verification(s) and 1 publish(es)" in worker.log.read_bytes()
    assert dbsession.scalars(sa.select(ReleaseFile.filename)).all() == [wheel.name]
    assert dbsession.scalars(sa.select(Filename.filename)).all() == [wheel.name]
