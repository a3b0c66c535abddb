"""A scheduled publish on the production stack: gunicorn, PostgreSQL, Redis and a real Celery
worker with beat. The publish is scheduled two seconds ahead; beat's ``publish_due`` starts
it at that time and the worker publishes it."""

from __future__ import annotations

import datetime

import httpx

from tests.conftest import build_wheel
from tests.e2e.test_worker import base, call, client, ini, redis_url, settled, token, upload_wheel, worker  # noqa: F401

KEY = "vnd-upload2-publish-after"


def test_a_publish_scheduled_two_seconds_ahead_is_published_by_beat(worker, base, client, dist_dir):
    session = call(client, f"{base}/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
    wheel = build_wheel(dist_dir, "foo", "1.0")
    upload_wheel(client, session, wheel)

    when = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(seconds=2)
    scheduled = call(client, session["links"]["publish"], {KEY: when.strftime("%Y-%m-%dT%H:%M:%SZ")}, 202).json()
    assert scheduled["status"] == "processing" and scheduled[KEY] == when.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert httpx.get(f"{base}/simple/foo/").status_code == 404

    done = settled(client, session["links"]["session"])
    assert done["status"] == "published", done
    assert datetime.datetime.now(datetime.UTC) >= when  # not before its time
    assert wheel.name in httpx.get(f"{base}/simple/foo/").text
