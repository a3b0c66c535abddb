"""The database connection of a publish terminated mid-way (``pg_terminate_backend``): the
publish is held at its last statement, after the filenames were reserved and the release
written, by a row lock the test holds, and its backend is then terminated. The request
answers 503, nothing of the publish remains (the reservation included), and a retry
publishes."""

from __future__ import annotations

import concurrent.futures
import hashlib

import httpx
import pytest
import sqlalchemy as sa

from pypi_upload2.builtin.models import Filename, Project, ReleaseFile
from pypi_upload2.models import NameReservation
from tests.conftest import build_wheel, gunicorn
from tests.e2e.stack import stack_ini
from tests.e2e.test_worker import call, wait_until


@pytest.fixture
def base(tmp_path, database_url, storage_dir, dbsession, is_postgresql):
    if not is_postgresql:
        pytest.skip("needs PostgreSQL (UPLOAD2_TEST_DATABASE_URL): pg_terminate_backend")
    with gunicorn(stack_ini(tmp_path / "stack.ini", database_url, storage_dir), "--workers", "2") as url:
        yield url


def blocked_backend(dbsession):
    row = dbsession.execute(sa.text(
        "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )).first()
    dbsession.rollback()
    return row


def test_a_publish_whose_connection_is_terminated_rolls_back_and_a_retry_publishes(base, make_user, dist_dir, engine,
                                                                                   dbsession):
    wheel = build_wheel(dist_dir, "newname", "1.0")
    data = wheel.read_bytes()
    with httpx.Client(auth=("__token__", make_user("alice")), timeout=60) as client:
        session = call(client, base + "/2.0/", {"name": "newname", "version": "1.0"}, 201).json()
        upload = call(client, session["links"]["upload"], {"filename": wheel.name, "size": len(data), "hashes": {
            "sha256": hashlib.sha256(data).hexdigest()}, "mechanism": "http-post-bytes"}, 202).json()
        client.post(upload["mechanism"]["file_url"], content=data).raise_for_status()
        call(client, upload["links"]["complete"], expected=201)

        with engine.connect() as holder, concurrent.futures.ThreadPoolExecutor(1) as pool:
            # The publish ends by dropping the name's reservation: hold that row.
            holder.execute(sa.select(NameReservation).with_for_update())
            publishing = pool.submit(call, client, session["links"]["publish"])
            pid, query = wait_until(lambda: blocked_backend(dbsession), what="the publish to reach its last statement")
            assert "upload2_name_reservations" in query
            assert dbsession.scalar(sa.select(sa.func.pg_terminate_backend(pid)))
            dbsession.rollback()
            holder.rollback()
            response = publishing.result(timeout=60)
        assert response.status_code == 503, response.text
        assert response.headers["Content-Type"] == "application/problem+json" and "Retry-After" in response.headers

        # Nothing of the publish: the filename is free, no project, release file or session change.
        assert dbsession.scalars(sa.select(Filename)).all() == []
        assert dbsession.scalars(sa.select(ReleaseFile)).all() == []
        assert dbsession.scalars(sa.select(Project)).all() == []
        dbsession.rollback()
        assert client.get(session["links"]["session"]).json()["status"] == "open"

        call(client, session["links"]["publish"], expected=201)
        listed = client.get(f"{base}/simple/newname/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        assert [f["filename"] for f in listed.json()["files"]] == [wheel.name]
