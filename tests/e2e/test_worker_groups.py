"""Release groups on the production stack: gunicorn, PostgreSQL, Redis and a real Celery worker
with beat. A deferred group publish is settled by the worker's ``publish_group``; a scheduled one
is started by beat at its time."""

from __future__ import annotations

import datetime

import httpx

from tests.conftest import build_wheel
from tests.e2e.test_worker import base, call, client, ini, redis_url, settled, token, upload_wheel, worker  # noqa: F401

KEY = "vnd-upload2-publish-after"
PROJECTS = ("core", "core-cli", "core-plugins")


def staged_group(base, client, dist_dir) -> dict:
    tokens = []
    for name in PROJECTS:
        session = call(client, f"{base}/2.0/", {"name": name, "version": "1.0"}, 201).json()
        upload_wheel(client, session, build_wheel(dist_dir, name, "1.0"))
        tokens.append(session["session-token"])
    groups = httpx.get(f"{base}/2.0/").json()["links"]["vnd-upload2-groups"]
    return call(client, groups, {"sessions": tokens}, 201).json()


def test_the_worker_publishes_a_deferred_group_at_once(worker, base, client, dist_dir):
    group = staged_group(base, client, dist_dir)
    assert call(client, group["links"]["publish"], expected=202).json()["status"] == "processing"
    done = settled(client, group["links"]["group"])
    assert done["status"] == "published", done
    assert {s["status"] for s in done["sessions"]} == {"published"}
    assert all(httpx.get(f"{base}/simple/{name}/").status_code == 200 for name in PROJECTS)


def test_a_group_scheduled_two_seconds_ahead_is_published_by_beat(worker, base, client, dist_dir):
    group = staged_group(base, client, dist_dir)
    when = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(seconds=2)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    scheduled = call(client, group["links"]["publish"], {KEY: stamp}, 202).json()
    assert scheduled["status"] == "processing" and scheduled[KEY] == stamp
    done = settled(client, group["links"]["group"])
    assert done["status"] == "published", done
    assert datetime.datetime.now(datetime.UTC) >= when
    assert all(httpx.get(f"{base}/simple/{name}/").status_code == 200 for name in PROJECTS)
