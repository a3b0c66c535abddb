"""The embedded default's SQLite engine: WAL, writers queued in order, commits durable.

A transaction begins deferred: its reads see a snapshot of the last commit and take no
lock, so a request's token check, its loads and the bytes it receives before its first
write run while another request writes. At the first statement that writes or asks for a
row lock (``FOR UPDATE``, which SQLite has not: SQLAlchemy leaves it out, the statement
still says so), the transaction takes the write lock with a fresh snapshot: it ends the
read and begins again with ``BEGIN IMMEDIATE``. What it read before that may since have
changed, as under PostgreSQL's READ COMMITTED, which the code is written for: what must
not change is read under a row lock, after that point.

Reads (a safe method's request: ``READ_ONLY``) never take the lock: they are served while
a writer holds it, e.g. an upload whose client stalls mid-body (for up to
``upload2.body_timeout``). SQLite's own queue is its busy handler: a waiter sleeps and
retries, up to 100 ms at a time, and under load may lose the race again and again (seconds
of tail latency, at last "database is locked"). Writers of one process therefore queue on a
lock first, and the one writer of each process at the head of its queue on an ``flock`` of
a file beside the database: both are handed over the moment a transaction ends (SQLite's
busy handler stays, for other programs' writers).

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
    """A connection that holds its process's writer lock from its transaction's first write
    (or row lock) to COMMIT or ROLLBACK."""

    writer: WriterQueue | None = None
    holding = False
    reading = False  # a read-only transaction: it may never write
    deferred = False  # a transaction that may write and has not yet

    def begin_read_only(self) -> None:
        # query_only: a write in a read's transaction fails loudly instead of racing writers.
        self.execute("PRAGMA query_only=ON")
        self.reading = True
        self.execute("BEGIN")

    def begin_deferred(self) -> None:
        self.deferred = True
        self.execute("BEGIN")

    def begin_writing(self) -> None:
        """Take the write lock: after this process's writers, then other processes'."""
        if not self.writer.acquire():
            raise sqlite3.OperationalError("database is locked")
        self.holding, self.deferred = True, False
        try:
            # The snapshot the reads so far saw may be older than the last commit: writing on
            # it would fail (SQLITE_BUSY_SNAPSHOT). Begin again on the latest.
            self.execute("ROLLBACK")
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        self.deferred = False
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

    # pysqlite's own transaction handling breaks SAVEPOINT: the begin event below begins
    # transactions itself.
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
            dbapi_connection.begin_read_only()
        else:
            dbapi_connection.begin_deferred()

    @event.listens_for(engine, "before_cursor_execute")
    def _before_execute(connection, _cursor, statement, _parameters, context, _executemany):
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection.deferred and writes(statement, context):
            dbapi_connection.begin_writing()

    return engine


def writes(statement: str, context) -> bool:
    """Whether a statement writes or asks for row locks: anything but a plain SELECT (a
    SAVEPOINT too, as what follows it writes)."""
    if statement.lstrip()[:6].upper() != "SELECT":
        return True
    compiled = getattr(context, "compiled", None)
    return compiled is not None and getattr(compiled.statement, "_for_update_arg", None) is not None
