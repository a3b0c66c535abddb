"""Trusted Publishing on the built-in index: an OIDC token from the local issuer (its JWKS
served on loopback) exchanged at PyPI's URLs for a short-lived token of one project."""

from __future__ import annotations

import datetime
import time

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa

from pypi_upload2.builtin.models import (
    ApiToken,
    Project,
    Role,
    TrustedPublisher,
    UsedOIDCToken,
)
from tests.conftest import Uploader, build_wheel, count, fetch
from tests.functional.test_deferred import run_task
from tests.oidc import Issuer, add_publisher, mint

REPO, WORKFLOW = "octo/foo", "release.yml"


@pytest.fixture
def app(make_app, issuer, gitlab_issuer):
    return make_app(**{"upload2.oidc_issuers": f"github {issuer.url}\ngitlab {gitlab_issuer.url}",
                       "upload2.oidc_token_lifetime": "600"})


def refused(app, jwt_text: str, code: str) -> str:
    body = mint(app, jwt_text, 422).json
    assert body["message"] == "Token request failed"
    assert [e["code"] for e in body["errors"]] == [code], body
    return body["errors"][0]["description"]


def test_the_audience_is_pypis_endpoint(app):
    assert app.get("/_/oidc/audience").json == {"audience": "pypi-upload2"}


def test_a_minted_token_uploads_to_its_project_only(app, issuer, dbsession, dist_dir, make_user):
    add_publisher(dbsession, "foo")
    make_user("bob")
    add_publisher(dbsession, "bar", user="bob", repository="octo/bar")
    answer = mint(app, issuer.github(REPO, WORKFLOW)).json
    assert answer["success"] is True and answer["token"].startswith("pypi-upload2-")
    assert 590 <= answer["expires"] - time.time() <= 600
    token = fetch(dbsession, ApiToken, project_name="foo")
    assert token.digest not in answer["token"]  # kept hashed only
    ci = Uploader(app, answer["token"])
    session = ci.create_session("foo", "1.0").json
    ci.upload(session, build_wheel(dist_dir, "foo", "1.0"))
    ci.publish(session)
    # Not a token of the publisher's user: bar is bob's, and alice's other projects are not its.
    assert ci.create_session("bar", "1.0", status=403)
    assert ci.create_session("brand-new", "1.0", status=403)


def test_a_replayed_token_is_refused(app, issuer, dbsession):
    add_publisher(dbsession, "foo")
    jwt_text = issuer.github(REPO, WORKFLOW)
    mint(app, jwt_text)
    assert "already exchanged" in refused(app, jwt_text, "invalid-reuse-token")
    assert count(dbsession, ApiToken) == 1 and count(dbsession, UsedOIDCToken) == 1


@pytest.mark.parametrize("claims, reason", [
    ({"lifetime": -120}, "expired"),
    ({"now": time.time() + 3600}, "not yet valid"),
    ({"audience": "pypi"}, "Audience"),
    ({"jti": None}, "jti"),
])
def test_tokens_that_do_not_verify_are_refused(app, issuer, dbsession, claims, reason):
    add_publisher(dbsession, "foo")
    repository = {"repository": REPO, "job_workflow_ref": f"{REPO}/.github/workflows/{WORKFLOW}@refs/tags/v1"}
    description = refused(app, issuer.token(**{**repository, **claims}), "invalid-token")
    assert reason in description
    assert count(dbsession, ApiToken) == 0


def test_a_token_signed_by_another_key_or_issuer_is_refused(app, issuer, dbsession):
    add_publisher(dbsession, "foo")
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "does not verify" in refused(app, issuer.github(REPO, WORKFLOW, key=forged), "invalid-token")
    assert "no signing key" in refused(app, issuer.github(REPO, WORKFLOW, kid="other"), "invalid-token")
    stranger = Issuer()
    stranger.url = "https://issuer.example"
    assert "trusts no issuer" in refused(app, stranger.github(REPO, WORKFLOW), "invalid-token")
    assert refused(app, "not-a-jwt", "invalid-token")
    assert app.post("/_/oidc/mint-token", "{}", content_type="application/json", status=422).json[
        "errors"][0]["code"] == "invalid-payload"
    assert count(dbsession, ApiToken) == 0


@pytest.mark.parametrize("kw", [
    {"repository": "octo/other"},
    {"workflow": "ci.yml"},
    {"environment": "staging"},
])
def test_claims_must_match_a_publisher(app, issuer, dbsession, kw):
    add_publisher(dbsession, "foo", environment="pypi")
    claims = {"repository": REPO, "workflow": WORKFLOW, "environment": "pypi", **kw}
    token = issuer.github(claims["repository"], claims["workflow"], environment=claims["environment"])
    assert "no trusted publisher" in refused(app, token, "invalid-publisher")
    assert count(dbsession, UsedOIDCToken) == 0  # a refused token is not spent
    # Case differences are GitHub's own (it compares case-insensitively).
    assert mint(app, issuer.github("Octo/Foo", "Release.yml", environment="PyPI")).json["success"]


def test_gitlab_publishers(app, gitlab_issuer, dbsession, dist_dir):
    add_publisher(dbsession, "foo", kind="gitlab", repository="group/sub/foo", workflow="ci/release.yml")
    assert "no trusted publisher" in refused(app, gitlab_issuer.gitlab("group/sub/foo", ".gitlab-ci.yml"),
                                             "invalid-publisher")
    ci = Uploader(app, mint(app, gitlab_issuer.gitlab("group/sub/foo", "ci/release.yml")).json["token"])
    ci.create_session("foo", "1.0")


def test_a_pending_publisher_registers_its_new_project(app, issuer, dbsession, dist_dir, make_user):
    make_user("alice")
    make_user("mallory")
    mine = add_publisher(dbsession, "new-thing", pending=True)
    theirs = add_publisher(dbsession, "new-thing", pending=True, user="mallory", repository="mallory/new-thing")
    ci = Uploader(app, mint(app, issuer.github(REPO, WORKFLOW)).json["token"])
    assert ci.create_session("other-new", "1.0", status=403)
    session = ci.create_session("new-thing", "1.0").json
    ci.upload(session, build_wheel(dist_dir, "new-thing", "1.0"))
    ci.publish(session)
    project = fetch(dbsession, Project, normalized_name="new-thing")
    assert fetch(dbsession, TrustedPublisher, id=mine).project_id == project.id
    # Someone else's pending publisher of the name stays pending, and mints nothing now.
    assert fetch(dbsession, TrustedPublisher, id=theirs).pending
    assert "registered since" in refused(app, issuer.github("mallory/new-thing", WORKFLOW), "invalid-pending-publisher")
    assert fetch(dbsession, Role, project_id=project.id).role_name == "Owner"
    # Now a publisher of the project: a second release needs no registration.
    ci = Uploader(app, mint(app, issuer.github(REPO, WORKFLOW)).json["token"])
    ci.create_session("new-thing", "2.0")


def test_a_pending_publisher_of_a_name_registered_since_is_refused(app, issuer, dbsession):
    add_publisher(dbsession, "taken", pending=True)
    add_publisher(dbsession, "taken", user="bob", repository="bob/taken")
    assert "registered since" in refused(app, issuer.github(REPO, WORKFLOW), "invalid-pending-publisher")


def test_removing_a_publisher_revokes_its_tokens(app, issuer, dbsession):
    publisher = add_publisher(dbsession, "foo")
    ci = Uploader(app, mint(app, issuer.github(REPO, WORKFLOW)).json["token"])
    ci.create_session("foo", "1.0")
    dbsession.execute(sa.delete(TrustedPublisher).where(TrustedPublisher.id == publisher))
    dbsession.commit()
    ci.create_session("foo", "2.0", status=401)


def test_the_issuers_keys_are_cached_for_a_bounded_time(make_app, issuer, dbsession):
    app = make_app(**{"upload2.oidc_issuers": f"github {issuer.url}", "upload2.oidc_jwks_lifetime": "1"})
    add_publisher(dbsession, "foo")
    mint(app, issuer.github(REPO, WORKFLOW))
    mint(app, issuer.github(REPO, WORKFLOW))
    assert issuer.jwks_requests == 1
    time.sleep(1.1)
    mint(app, issuer.github(REPO, WORKFLOW))
    assert issuer.jwks_requests == 2


def test_trusted_publishing_can_be_turned_off(make_app):
    app = make_app(**{"upload2.trusted_publishing": "false"})
    assert app.get("/_/oidc/audience", status=403).json["message"].startswith("Trusted publishing")
    app.post_json("/_/oidc/mint-token", {"token": "x"}, status=403)


def test_the_sweep_forgets_spent_tokens_once_expired(app, issuer, dbsession):
    add_publisher(dbsession, "foo")
    mint(app, issuer.github(REPO, WORKFLOW))
    run_task(app.app, "sweep_index")
    assert count(dbsession, UsedOIDCToken) == 1  # still valid: a replay must meet it
    dbsession.execute(sa.update(UsedOIDCToken).values(
        expires_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)))
    dbsession.commit()
    run_task(app.app, "sweep_index")
    assert count(dbsession, UsedOIDCToken) == 0
