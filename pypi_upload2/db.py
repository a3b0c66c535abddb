"""Engine, declarative base and the per-request session joined to ``request.tm``."""

from __future__ import annotations

import datetime
import functools
import os
import re

import sqlalchemy as sa
import zope.sqlalchemy
from sqlalchemy import event, orm
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from transaction._transaction import Status as TransactionStatus

# Named constraints keep the migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            value = value.astimezone(datetime.UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        # PostgreSQL answers in the connection's time zone, which need not be UTC.
        return value.astimezone(datetime.UTC)


# Ids are INTEGER columns: 32 bits on PostgreSQL.
MAX_ID = 2**31 - 1


def parse_id(text: str) -> int | None:
    """The id a URL or a token names, or None when ``text`` cannot be one: ASCII digits
    that fit the id columns (a larger number would fail in the driver, not match)."""
    if not re.fullmatch(r"[0-9]{1,10}", text) or int(text) > MAX_ID:
        return None
    return int(text)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def normalize_url(url: str, here: str | None = None) -> sa.engine.URL:
    """``postgresql://`` means psycopg 3, the driver this project installs; a relative
    SQLite path resolves against ``here`` (the ini file's folder)."""
    parsed = sa.engine.make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        database = os.path.expanduser(parsed.database)
        database = os.path.abspath(os.path.join(here or os.getcwd(), database))
        os.makedirs(os.path.dirname(database), exist_ok=True)
        parsed = parsed.set(database=database)
    return parsed


def make_engine(url: str, here: str | None = None) -> sa.engine.Engine:
    parsed = normalize_url(url, here)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    from . import sqlite

    return sqlite.make_engine(parsed)


def session_factory(engine: sa.engine.Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


# The request's transaction manager, in its session's ``info``.
TRANSACTION_MANAGER = "upload2.tm"


class _RequestSession(Session):
    """A session joined to its request's transaction manager. zope.sqlalchemy's events are
    listened to once on this class (below), where ``zope.sqlalchemy.register`` would add
    seven listeners to every request's session."""


def _joined(session: Session, state=zope.sqlalchemy.datamanager.STATUS_ACTIVE) -> None:
    zope.sqlalchemy.datamanager.join_transaction(session, state, session.info[TRANSACTION_MANAGER])


def _changed(session: Session) -> None:
    zope.sqlalchemy.mark_changed(session, session.info[TRANSACTION_MANAGER])


def _committing(session: Session) -> None:
    # zope.sqlalchemy's guard (and its import of Status): only the transaction manager commits.
    assert session.in_nested_transaction() or session.info[TRANSACTION_MANAGER].get().status == \
        TransactionStatus.COMMITTING, "Transaction must be committed using the transaction manager"


for _name, _listener in {
    "after_begin": lambda session, _transaction, _connection: _joined(session),
    "after_attach": lambda session, _instance: _joined(session),
    "after_flush": lambda session, _context: _changed(session),
    "after_bulk_update": lambda context: _changed(context.session),
    "after_bulk_delete": lambda context: _changed(context.session),
    "do_orm_execute": lambda state: _changed(state.session) if state.is_orm_statement and (
        state.is_update or state.is_insert or state.is_delete) else None,
    "before_commit": _committing,
}.items():
    event.listen(_RequestSession, _name, _listener)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def read_only(engine: sa.engine.Engine, read_only: bool = True) -> sa.engine.Engine:
    """The engine for requests of a safe method: on SQLite their transactions take no lock
    (``read_only=False``: the engine again, for a write such a request makes on its own)."""
    from .sqlite import READ_ONLY

    return engine.execution_options(**{READ_ONLY: read_only})


def request_db(request) -> Session:
    """One ORM session per request, committed or aborted by pyramid_tm."""
    options = request.registry["upload2.dbsession_factory"].kw
    if request.method in SAFE_METHODS:
        options = {**options, "bind": request.registry["upload2.read_only_engine"]}
    return _RequestSession(**{**options, "info": {TRANSACTION_MANAGER: request.tm}})


def insert(db: Session, *objs) -> bool:
    """Insert ``objs``; False, and none of them kept, when a unique constraint refused any
    (the database settles races: the loser's transaction goes on). One ``INSERT … ON
    CONFLICT DO NOTHING RETURNING`` per object, which then is persistent as if loaded: no
    savepoint, no flush. Objects already in the session, or that set a relationship or
    inherit a table, and other databases: in a savepoint, flushed."""
    dialect = db.get_bind().dialect.name
    if dialect not in _INSERTS or not all(_plain(obj) for obj in objs):
        return _insert_in_savepoint(db, objs)
    inserted = []
    for obj in objs:
        mapper = sa.inspect(type(obj))
        statement, columns = _INSERTS[dialect](mapper)
        row = db.execute(statement, {column.key: obj.__dict__[key] for key, column in columns.items()
                                     if key in obj.__dict__}).first()
        if row is None:
            for done in inserted:  # the earlier rows of a refused batch go too
                state = sa.inspect(done)
                db.execute(sa.delete(state.class_).where(*[
                    column == value for column, value in zip(state.mapper.primary_key, state.identity, strict=True)])
                    .execution_options(synchronize_session=False))
                db.expunge(done)
            return False
        for key, value in zip(columns, row, strict=True):
            orm.attributes.set_committed_value(obj, key, value)
        orm.make_transient_to_detached(obj)
        db.add(obj)
        inserted.append(obj)
    return True


def _on_conflict_do_nothing(construct):
    @functools.cache
    def statement(mapper):
        """The class's insert returning every column, and its columns by attribute. An ORM
        statement (zope.sqlalchemy marks the session changed), run as Core would ("raw")."""
        columns = {attr.key: attr.columns[0] for attr in mapper.column_attrs}
        return construct(mapper.class_).on_conflict_do_nothing().returning(*columns.values()).execution_options(
            dml_strategy="raw"), columns
    return statement


_INSERTS = {"sqlite": _on_conflict_do_nothing(sqlite_insert), "postgresql": _on_conflict_do_nothing(postgresql_insert)}


def _plain(obj) -> bool:
    """A new object of one table whose row is its columns' values (foreign keys by id)."""
    mapper = sa.inspect(type(obj))
    return sa.inspect(obj).transient and mapper.inherits is None and not any(
        rel.key in obj.__dict__ for rel in mapper.relationships)


def _insert_in_savepoint(db: Session, objs) -> bool:
    try:
        with db.begin_nested():
            db.add_all(objs)
            db.flush()
    except sa.exc.IntegrityError:
        return False
    return True


def is_postgresql(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


#: The plugin's alembic version table, beside any of the host's.
VERSION_TABLE = "upload2_alembic_version"
