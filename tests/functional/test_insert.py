"""``db.insert``: rows that a unique constraint may refuse, inserted with ``ON CONFLICT DO
NOTHING`` (no savepoint), on the test database (SQLite or PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa

from pypi_upload2 import db
from pypi_upload2.builtin.models import Filename
from pypi_upload2.models import NameReservation


def test_an_inserted_object_is_persistent_with_its_defaults_loaded(dbsession):
    reservation = NameReservation(normalized_name="foo", principal_key="1")
    assert db.insert(dbsession, reservation)
    state = sa.inspect(reservation)
    # Every column came back with the insert (the default of ``created`` too): nothing to load.
    assert state.persistent and not state.unloaded and not state.expired_attributes
    assert reservation.created is not None and not dbsession.dirty and not dbsession.new
    assert dbsession.get(NameReservation, "foo") is reservation
    dbsession.commit()
    assert dbsession.scalar(sa.select(NameReservation.principal_key)) == "1"


def test_a_refused_object_leaves_the_transaction_going_on(dbsession):
    assert db.insert(dbsession, NameReservation(normalized_name="foo", principal_key="1"))
    refused = NameReservation(normalized_name="foo", principal_key="2")
    assert not db.insert(dbsession, refused)
    assert not sa.inspect(refused).persistent
    # PostgreSQL would refuse every later statement had the conflict been an error.
    assert db.insert(dbsession, NameReservation(normalized_name="bar", principal_key="2"))
    dbsession.commit()
    assert dict(dbsession.execute(sa.select(NameReservation.normalized_name, NameReservation.principal_key))
                .all()) == {"foo": "1", "bar": "2"}


def test_a_batch_with_one_refused_row_keeps_none(dbsession):
    assert db.insert(dbsession, Filename(filename="b.whl"))
    batch = [Filename(filename="a.whl"), Filename(filename="b.whl"), Filename(filename="c.whl")]
    assert not db.insert(dbsession, *batch)
    assert not any(sa.inspect(f).persistent for f in batch)
    dbsession.commit()
    assert list(dbsession.scalars(sa.select(Filename.filename))) == ["b.whl"]


def test_an_object_already_in_the_session_is_inserted_in_a_savepoint(dbsession):
    pending = NameReservation(normalized_name="foo", principal_key="1")
    dbsession.add(pending)
    assert db.insert(dbsession, pending)
    assert not db.insert(dbsession, NameReservation(normalized_name="foo", principal_key="2"))
    dbsession.commit()
    assert list(dbsession.scalars(sa.select(NameReservation.principal_key))) == ["1"]
