"""Fixtures and helpers for tests against the host app (imported by the test modules)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from tests.conftest import Uploader

from .models import HostBase, new_account


class BearerUploader(Uploader):
    """The conftest Uploader, with the host's credentials instead of the plugin's tokens."""

    def __init__(self, app, key, root="/2.0/"):
        super().__init__(app, "unused", root)
        self.headers = {"Authorization": f"Bearer {key}"}


@pytest.fixture
def host_tables(engine, dbsession):
    """The host's tables in the test database, for one test (the plugin's are migrated)."""
    HostBase.metadata.create_all(engine)
    yield
    HostBase.metadata.drop_all(engine)


@pytest.fixture
def host_files(tmp_path):
    path = tmp_path / "host-files"
    path.mkdir()
    return path


@pytest.fixture
def host_settings(settings, host_files, host_tables):
    return {**settings, "host.files": str(host_files)}


@pytest.fixture
def make_account(engine, host_tables):
    """``make_account(login)`` -> (account id, plain key)."""
    def make(login: str):
        with Session(engine) as db, db.begin():
            account, key = new_account(db, login)
            return account.id, key

    return make
