"""Stage-only tokens: a CI job stages, uploads, replaces and cancels, and a maintainer with a
publishing token publishes; through both doors, with the publish deferred or not."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from pypi_upload2.builtin.auth import new_token
from pypi_upload2.builtin.models import ApiToken, ReleaseFile, User
from pypi_upload2.models import PublishingSession
from pypi_upload2.states import PublishingStatus
from tests.conftest import Uploader, assert_problem, build_sdist, build_wheel, count, fetch
from tests.functional.test_legacy import Legacy


@pytest.fixture
def ci_token(dbsession, alice):
    """A stage-only token of alice's (alice herself has a publishing one)."""
    user = dbsession.scalar(sa.select(User).where(User.username == "alice"))
    token = new_token(dbsession, user, "CI of foo", may_publish=False)
    dbsession.commit()
    return token


@pytest.mark.parametrize("mode", ["sync", "deferred"])
def test_ci_stages_and_a_maintainer_publishes(make_app, make_user, dbsession, dist_dir, mode):
    app = make_app(**{"upload2.publish_mode": mode})
    maintainer = Uploader(app, make_user("alice"))
    user = dbsession.scalar(sa.select(User).where(User.username == "alice"))
    ci = Uploader(app, new_token(dbsession, user, may_publish=False))
    dbsession.commit()

    session = ci.create_session().json
    wheel = build_wheel(dist_dir, "foo", "1.0")
    ci.upload(session, wheel)
    ci.upload(session, wheel)  # replacing a file is staging too
    body = assert_problem(ci.publish(session, status=403), 403, source="authorization")
    assert body["title"] == "Publish not allowed" and "lacks the publish permission" in body["detail"]
    assert fetch(dbsession, PublishingSession, id=1).status == PublishingStatus.OPEN  # nothing changed
    preflight = assert_problem(ci.get(session["links"]["vnd-upload2-preflight"], status=409), 409,
                               source="authorization")
    assert len(preflight["errors"]) == 1

    assert maintainer.get(session["links"]["vnd-upload2-preflight"]).json["errors"] == []
    maintainer.publish(session, status=201 if mode == "sync" else 202)
    assert count(dbsession, ReleaseFile) == 1  # deferred: the task ran after the request (no broker)


def test_a_stage_only_token_may_cancel(alice, ci_token, dist_dir, testapp):
    ci = Uploader(testapp, ci_token)
    session = ci.create_session().json
    ci.upload(session, build_sdist(dist_dir, "foo", "1.0"))
    assert ci.delete(session["links"]["session"]).json["status"] == "canceled"


def test_a_stage_only_token_cannot_publish_through_the_legacy_door(alice, ci_token, dist_dir, testapp, dbsession):
    legacy = Legacy(testapp, ci_token)
    refused = legacy.upload(build_wheel(dist_dir, "foo", "1.0"), 403)
    assert "lacks the publish permission" in refused.status
    assert count(dbsession, ReleaseFile) == 0 and count(dbsession, PublishingSession) == 0
    # Staged through the legacy door (the form's staged=true): allowed, and published by alice.
    staged = legacy.upload(build_wheel(dist_dir, "foo", "1.0"), 201, staged="true")
    alice.publish({"links": {"publish": staged.json["links"]["publish"]}})
    assert count(dbsession, ReleaseFile) == 1


def test_tokens_default_to_publishing(dbsession, alice):
    assert [t.may_publish for t in dbsession.scalars(sa.select(ApiToken))] == [True]
    dbsession.commit()
