"""Warehouse's macaroons and permissions decide who may use the 2.0 API."""

from __future__ import annotations

import json

from tests.conftest import CT, META, Uploader, assert_problem, basic
from tests.warehouse.conftest import ROOT


def create(app, name, headers=None, status=201, url=ROOT):
    body = {"meta": META, "name": name, "version": "1.0"}
    return app.post(url, json.dumps(body), headers={**(headers or {}), "Content-Type": CT}, status=status)


def test_a_user_token_creates_a_session(owner):
    session = owner.create_session(owner.project, "1.0").json
    assert session["status"] == "open"


def test_a_project_scoped_token_creates_a_session(owner, wh):
    token = wh.token(owner.user_id, owner.project)
    create(owner.app, owner.project, basic(token))


def test_no_token_is_401(owner):
    assert_problem(create(owner.app, owner.project, status=401), 401)


def test_an_invalid_token_is_401(owner):
    assert_problem(create(owner.app, owner.project, basic("pypi-garbage"), status=401), 401)


def test_a_cookie_session_is_not_enough(owner):
    # Only a macaroon identifies the caller: Basic auth with a password is no principal.
    headers = {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}
    assert_problem(create(owner.app, owner.project, headers, status=401), 401)


def test_a_user_without_a_role_is_403(owner, wh):
    stranger = Uploader(owner.app, wh.token(wh.user()), root=ROOT)
    assert_problem(stranger.create_session(owner.project, "1.0", status=403), 403)


def test_a_maintainer_may_upload(owner, wh):
    maintainer = wh.user()
    wh.add_role(owner.project, maintainer, "Maintainer")
    Uploader(owner.app, wh.token(maintainer), root=ROOT).create_session(owner.project, "1.0")


def test_a_token_scoped_to_another_project_is_403(owner, wh):
    other = owner.project + "x"
    wh.project(other, owner.user_id)
    token = wh.token(owner.user_id, other)
    assert_problem(create(owner.app, owner.project, basic(token), status=403), 403)


def test_the_2_0_media_type_at_legacy_creates_a_session(owner):
    """The PEP's content negotiation on forklift's URL."""
    response = create(owner.app, owner.project, owner.headers, url="/legacy/")
    assert response.json["status"] == "open"
    assert response.content_type == CT
