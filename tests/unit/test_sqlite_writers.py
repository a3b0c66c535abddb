"""The embedded default's SQLite transactions (pypi_upload2/sqlite.py): reads before the first
write take no lock, and the first write (or row lock, or savepoint) takes it on the latest
commit, so a writer never works on a snapshot older than what another committed."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
import sqlalchemy as sa

from pypi_upload2 import db

metadata = sa.MetaData()
counters = sa.Table("counters", metadata, sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("value", sa.Integer, nullable=False))


@pytest.fixture
def engine(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'writers.sqlite'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(counters.insert().values(id=1, value=1))
    yield engine
    engine.dispose()


def holding(conn) -> bool:
    return conn.connection.dbapi_connection.holding


def bump(engine) -> None:
    with engine.begin() as conn:
        conn.execute(counters.update().where(counters.c.id == 1).values(value=counters.c.value + 1))


def in_thread(fn, *args):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result(timeout=10)


def test_reads_before_the_first_write_do_not_hold_other_writers(engine):
    with engine.connect() as conn, conn.begin():
        assert conn.scalar(sa.select(counters.c.value)) == 1
        assert not holding(conn)
        # Another writer commits meanwhile (it would wait out the busy timeout if the read held the lock).
        in_thread(bump, engine)
        assert conn.scalar(sa.select(counters.c.value)) == 1  # still the reader's snapshot
    with engine.connect() as conn:
        assert conn.scalar(sa.select(counters.c.value)) == 2


@pytest.mark.parametrize("first_write", ["row lock", "update", "savepoint"])
def test_the_first_write_works_on_the_latest_commit(engine, first_write):
    with engine.connect() as conn, conn.begin():
        assert conn.scalar(sa.select(counters.c.value)) == 1
        in_thread(bump, engine)
        if first_write == "row lock":
            # SQLite has no FOR UPDATE: the statement still asks for the lock, and reads the latest.
            assert conn.scalar(sa.select(counters.c.value).with_for_update()) == 2
        elif first_write == "update":
            conn.execute(counters.update().values(value=counters.c.value * 10))
        else:
            conn.begin_nested()
        assert holding(conn)
        conn.execute(counters.update().values(value=counters.c.value * 10))
    with engine.connect() as conn:
        assert conn.scalar(sa.select(counters.c.value)) == (200 if first_write == "update" else 20)


def test_a_writer_holds_the_others_until_it_ends(engine):
    started, order = threading.Event(), []

    def second():
        started.set()
        bump(engine)
        order.append("second")

    with engine.connect() as conn, conn.begin():
        conn.scalar(sa.select(counters.c.value).with_for_update())
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(second)
            started.wait(5)
            with pytest.raises(concurrent.futures.TimeoutError):
                waiting.result(timeout=0.3)
            conn.execute(counters.update().values(value=counters.c.value * 10))
            order.append("first")
            conn.commit()
            waiting.result(timeout=10)
    assert order == ["first", "second"]
    with engine.connect() as conn:
        assert conn.scalar(sa.select(counters.c.value)) == 11


def test_a_read_only_transaction_may_not_write(engine):
    with db.read_only(engine).connect() as conn, conn.begin():
        with pytest.raises(sa.exc.OperationalError, match="readonly"):
            conn.execute(counters.update().values(value=0))
        assert not holding(conn)
