"""The embedded default's SQLite engine: WAL, writers queued in order, commits durable.

Every transaction that may write begins with ``BEGIN IMMEDIATE`` (it takes the write lock),
so writers queue instead of failing when a read turns into a write. Reads (a safe method's
request: ``READ_ONLY``) begin a deferred transaction, a snapshot of the last commit that
takes no lock: they are served while a writer holds the lock, e.g. an upload whose client
stalls mid-body (for up to ``upload2.body_timeout``). SQLite's own queue is its
busy handler: a waiter sleeps and retries, up to 100 ms at a time, and under load may lose
the race again and again (seconds of tail latency, at last "database is locked"). Writers of
one process therefore queue on a lock first, and the one writer of each process at the
head of its queue on an ``flock`` of a file beside the database: both are handed over the
moment a transaction ends (SQLite's busy handler stays, for other programs' writers).

Durability: ``synchronous=FULL`` fsyncs the write-ahead log at every commit, so a 201 means
the rows survive a power loss, as the stored bytes do (they are fsynced before it). WAL's
``NORMAL`` would save that fsync but may lose the last commits on a power loss, after the
client was told they were made.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading

import sqlalchemy as sa
from sqlalchemy import event

BUSY_TIMEOUT_S = 30
# The execution option of a connection whose transactions only read.
READ_ONLY = "upload2_read_only"


class WriterQueue:
    """This process's writers of one database: a thread lock, then the file lock."""

    def __init__(self, database: str):
        self.lock = threading.Lock()
        self.path = database + "-writer" if database not in ("", ":memory:") else None
        self.fd: int | None = None
        self.pid: int | None = None

    def acquire(self) -> bool:
        if not self.lock.acquire(timeout=BUSY_TIMEOUT_S):
            return False
        if self.path is not None:
            try:
                if self.fd is None or os.getpid() != self.pid:  # a forked worker opens its own
                    self.fd, self.pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except BaseException:
                self.lock.release()
                raise
        return True

    def release(self) -> None:
        if self.path is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.lock.release()


_queues: dict[str, WriterQueue] = {}
_queues_guard = threading.Lock()


def _writer_queue(database: str) -> WriterQueue:
    with _queues_guard:
        return _queues.setdefault(database, WriterQueue(database))


class QueuedConnection(sqlite3.Connection):
    """A connection that holds its process's writer lock from BEGIN to COMMIT or ROLLBACK."""

    writer: WriterQueue | None = None
    holding = False
    reading = False

    def begin_deferred(self) -> None:
        # query_only: a write in a read's transaction fails loudly instead of racing writers.
        self.execute("PRAGMA query_only=ON")
        self.reading = True
        self.execute("BEGIN")

    def begin_immediate(self) -> None:
        if not self.writer.acquire():
            raise sqlite3.OperationalError("database is locked")
        self.holding = True
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self.reading:
            self.reading = False
            self.execute("PRAGMA query_only=OFF")
        if self.holding:
            self.holding = False
            self.writer.release()

    def commit(self):
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self):
        try:
            super().rollback()
        finally:
            self._release()

    def close(self):
        try:
            super().close()
        finally:
            self._release()


def make_engine(url: sa.engine.URL) -> sa.engine.Engine:
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "factory": QueuedConnection})
    lock = _writer_queue(url.database or ":memory:")

    # pysqlite's own transaction handling breaks SAVEPOINT and defers BEGIN: SQLAlchemy's
    # begin event emits BEGIN IMMEDIATE itself.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.writer = lock
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        dbapi_connection = connection.connection.dbapi_connection
        if connection.get_execution_options().get(READ_ONLY):
            dbapi_connection.begin_deferred()
        else:
            dbapi_connection.begin_immediate()

    return engine
