"""A new project name: reserved by the session, registered by Warehouse at publish."""

from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import Uploader, assert_problem, build_wheel
from tests.warehouse.conftest import ROOT, unique


def test_session_reserves_and_publish_registers(wh, wh_testapp, dist_dir):
    from warehouse.accounts.models import User
    from warehouse.packaging.models import JournalEntry, Project, Role

    from pypi_upload2.models import NameReservation

    user_id = wh.user()
    creator = Uploader(wh_testapp, wh.token(user_id), root=ROOT)
    name = unique("newpkg")
    session = creator.create_session(name, "0.1").json
    assert wh.query(sa.select(Project).where(Project.normalized_name == name)) == []
    [(reservation,)] = wh.query(sa.select(NameReservation).where(NameReservation.normalized_name == name))
    assert reservation.principal_key == str(user_id)
    assert name not in wh_testapp.get("/simple/").text
    wh_testapp.get(f"/simple/{name}/", status=404)

    # Another user cannot take the reserved name meanwhile.
    other = Uploader(wh_testapp, wh.token(wh.user()), root=ROOT)
    assert other.create_session(name, "0.1", status="4*").status_int in (403, 409)

    wheel = build_wheel(dist_dir, name, "0.1")
    creator.upload(session, wheel)
    creator.publish(session, status=201)

    [(project,)] = wh.query(sa.select(Project).where(Project.normalized_name == name))
    roles = wh.query(sa.select(Role.role_name, User.id).join(User).where(Role.project_id == project.id))
    assert [(r, u) for r, u in roles] == [("Owner", user_id)]
    actions = [a for (a,) in wh.query(sa.select(JournalEntry.action).where(JournalEntry.name == name)
                                      .order_by(JournalEntry.id))]
    assert actions[0] == "create" and "new release" in actions
    assert wh.query(sa.select(NameReservation).where(NameReservation.normalized_name == name)) == []
    assert name in wh_testapp.get("/simple/").text
    files = wh_testapp.get(f"/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json
    assert [f["filename"] for f in files["files"]] == [wheel.name]


def test_a_user_without_two_factor_cannot_register(wh, wh_testapp):
    user = Uploader(wh_testapp, wh.token(wh.user(two_factor=False)), root=ROOT)
    assert_problem(user.create_session(unique("newpkg"), "0.1", status=403), 403)


def test_an_invalid_or_stdlib_name_is_refused(wh, wh_testapp):
    user = Uploader(wh_testapp, wh.token(wh.user()), root=ROOT)
    response = user.create_session("asyncio", "0.1", status=400)
    assert_problem(response, 400, "name")
