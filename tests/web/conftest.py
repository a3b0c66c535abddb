"""Fixtures for the web pages: the app with ``upload2.web`` on, users with passwords."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import webtest

from pypi_upload2 import main
from pypi_upload2.builtin import passwords
from pypi_upload2.builtin.models import User

SECRET = "test-secret-" + "x" * 32
PASSWORD = "correct horse battery"


@pytest.fixture
def web_settings(settings):
    return {**settings, "upload2.web": "true", "upload2.web.secret": SECRET}


@pytest.fixture
def webapp(web_settings, dbsession):
    app = main({}, **web_settings)
    yield webtest.TestApp(app)
    app.registry["upload2.engine"].dispose()


@pytest.fixture
def set_password(dbsession):
    def set_(username: str, password: str = PASSWORD) -> None:
        user = dbsession.scalar(sa.select(User).where(User.username == username))
        user.password_hash = passwords.make_hash(password)
        dbsession.commit()
    return set_


def sign_in(app, username: str, password: str = PASSWORD, status=303):
    form = app.get("/account/login/").forms["login"]
    form["username"], form["password"] = username, password
    return form.submit(status=status)
