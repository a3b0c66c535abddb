"""Celery wired into Pyramid: an app configured from the settings, tasks that look like views,
sending after commit, and the beat schedule.

    UPLOAD2_CONFIG=production.ini celery -A pypi_upload2.tasks worker -B

An empty ``celery.broker_url`` runs each task in the web process right after the request
that enqueued it commits (eager): the embedded default of ``make serve``.
"""

from __future__ import annotations

import functools
import logging
import os

import celery
import celery.signals
import kombu.exceptions
import pyramid.exceptions
import pyramid.paster
import pyramid.scripting
import transaction
from pyramid.path import DottedNameResolver
from zope.interface import implementer

from .interfaces import ITaskQueue
from .problems import ServiceUnavailable
from .services import expiry, files, groups, orphans, publication
from .storage import StorageUnavailable

CONFIG_ENV = "UPLOAD2_CONFIG"
QUEUE = "upload2"
log = logging.getLogger(__name__)
# Seconds a client is asked to wait when the broker is unreachable.
BROKER_RETRY_AFTER = 10


class RequestTask(celery.Task):
    """A task receives a request of its own first, built from the app's registry, with its
    own transaction manager and so its own DB session (``with request.tm:`` per transaction).

    Tasks are idempotent and acknowledged late: a worker killed mid-task leaves the message
    to another worker, which finds the work done or does it again."""

    acks_late = True
    # A pool process killed mid-task puts the message back rather than acknowledging it.
    reject_on_worker_lost = True
    # The request argument is supplied here, not by whoever sends the task.
    typing = False

    def __call__(self, *args, **kwargs):
        env = pyramid.scripting.prepare(registry=self.app.upload2_registry)
        request = env["request"]
        # Not a safe method's: a task writes, and its transactions queue for the write lock (db.py).
        request.method = "POST"
        request.tm = transaction.TransactionManager(explicit=True)
        try:
            return self.run(request, *args, **kwargs)
        finally:
            env["closer"]()


@implementer(ITaskQueue)
class CeleryTaskQueue:
    """Tasks go to the broker from an after-commit hook of the request's transaction.

    The broker is asked first: unreachable, the request fails (503) and its transaction
    aborts, so no row says ``processing`` for work nobody was told about. A send that still
    fails after the commit (the broker went away in between) is logged; the periodic
    re-send of work ``processing`` past ``upload2.processing_deadline`` recovers it."""

    def __init__(self, app: celery.Celery, tm):
        self.app, self.tm = app, tm

    @classmethod
    def create_service(cls, context, request):
        return cls(request.registry["upload2.celery"], request.tm)

    def enqueue(self, name: str, *args) -> None:
        task = self.app.tasks[f"{__package__}.{name}"]
        if not self.app.conf.task_always_eager:
            self._check_broker()
        self.tm.get().addAfterCommitHook(_send, args=(task, args))

    def _check_broker(self) -> None:
        # A connection of its own: a pooled one would not notice a broker gone since its last use.
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=0)
        except (kombu.exceptions.OperationalError, OSError) as exc:
            log.warning("task broker unreachable: %s", exc)
            raise ServiceUnavailable(
                "Task queue unavailable", "The server cannot take deferred work right now; nothing was "
                "changed. Retry the request later.", headers={"Retry-After": str(BROKER_RETRY_AFTER)}) from exc


def _send(committed: bool, task, args) -> None:
    # Eager mode runs the task right here, after the commit, in a transaction of its own.
    if committed:
        try:
            task.apply_async(args)
        except kombu.exceptions.OperationalError:
            log.exception("could not send %s%r; the re-send sweep will", task.name, tuple(args))


# -- the tasks -------------------------------------------------------------------------------

def verify_file(request, file_id: int) -> None:
    """Hash a file stored without hashing (the resumable mechanism's), check it, and settle
    it: completed, or error with a notice saying why."""
    with request.tm:
        files.verify_deferred(request, file_id)


def publish_session(request, session_id: int) -> None:
    """A deferred publish, its filenames reserved by the request: run the publish checks,
    then publish, or release the reservation and report."""
    with request.tm:
        errors = publication.check(request, session_id)
    with request.tm:
        publication.conclude(request, session_id, errors)


def publish_group(request, group_id: int) -> None:
    """A release group's deferred publish, as a session's: every member's checks, then all of
    them published at once, or all released and reported."""
    with request.tm:
        errors = groups.check(request, group_id)
    with request.tm:
        groups.conclude(request, group_id, errors)


def resend_processing(request) -> None:
    """Periodic: hand files and publishes processing past the deadline to a worker again."""
    with request.tm:
        expiry.resend_processing(request)


def expire_sessions(request) -> None:
    """Periodic: cancel publishing and file upload sessions past their ``expires-at``."""
    with request.tm:
        expiry.expire_sessions(request)
    with request.tm:
        expiry.expire_files(request)


def purge_ended_sessions(request) -> None:
    """Periodic: forget terminal sessions older than ``upload2.status_retention``."""
    with request.tm:
        expiry.purge_ended_sessions(request)


def publish_due(request) -> None:
    """Periodic, at least every 15 seconds: start the scheduled publishes whose time has come."""
    with request.tm:
        expiry.publish_due(request)


def abort_orphan_uploads(request) -> None:
    """Periodic: abort multipart uploads in the object store that no live file owns."""
    with request.tm:
        orphans.abort_orphan_uploads(request)


def sweep_index(request) -> None:
    """Periodic: the host index's own housekeeping, the dotted names it lists in
    ``registry["upload2.index_sweeps"]`` (the built-in index forgets spent OIDC tokens), each
    a ``sweep(request)`` in a transaction of its own."""
    for name in request.registry.get("upload2.index_sweeps", ()):
        with request.tm:
            DottedNameResolver().maybe_resolve(name)(request)


TASKS = (verify_file, publish_session, publish_group, resend_processing, expire_sessions, purge_ended_sessions, publish_due,
         abort_orphan_uploads, sweep_index)
PERIODIC = (resend_processing, expire_sessions, purge_ended_sessions, abort_orphan_uploads, sweep_index)
DUE_INTERVAL = 15  # seconds: a scheduled publish starts within this of its time
# A worker's task that found the object store down runs again within 1, 2, 4, ... s (at most
# a minute apart, jittered); past the last, the re-send sweep hands it out again.
STORAGE_RETRIES = {"autoretry_for": (StorageUnavailable,), "retry_backoff": True, "retry_backoff_max": 60,
                   "max_retries": 6}


def make_celery(registry) -> celery.Celery:
    settings = registry["upload2.settings"]
    app = celery.Celery(__package__, set_as_current=False, task_cls=RequestTask)
    app.conf.update(
        # Eager mode never touches a broker; memory:// keeps Celery from assuming AMQP.
        broker_url=settings.broker_url or "memory://",
        broker_connection_retry_on_startup=True,
        task_always_eager=not settings.broker_url,
        task_eager_propagates=True,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=QUEUE,
        # Late acknowledgement holds one message per process; the rest stay for other workers.
        worker_prefetch_multiplier=1,
        beat_schedule={
            **{task.__name__: {"task": f"{__package__}.{task.__name__}", "schedule": settings.sweep_interval}
               for task in PERIODIC},
            "publish_due": {"task": f"{__package__}.publish_due",
                            "schedule": min(settings.sweep_interval, DUE_INTERVAL)},
        },
    )
    app.upload2_registry = registry
    for func in TASKS:
        # Not in eager mode: the retries would hold the web process that ran the request.
        app.task(name=f"{__package__}.{func.__name__}", **(STORAGE_RETRIES if settings.broker_url else {}))(func)
    return app


def includeme(config):
    config.registry["upload2.celery"] = make_celery(config.registry)


# -- the worker's side -----------------------------------------------------------------------

def __getattr__(name: str):
    # ``celery -A pypi_upload2.tasks`` looks up ``app``: the Celery app of the Pyramid app
    # built from the ini file named by UPLOAD2_CONFIG, once per worker.
    if name == "app":
        return worker_app(os.environ.get(CONFIG_ENV, "development.ini"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def worker_app(ini: str) -> celery.Celery:
    if not os.path.exists(ini):
        raise SystemExit(f"pypi-upload2: config file not found: {ini} (set {CONFIG_ENV})")
    try:
        env = pyramid.paster.bootstrap(ini)
    except pyramid.exceptions.ConfigurationError as exc:
        raise SystemExit(f"pypi-upload2: {ini}: {exc}") from exc
    registry = env["registry"]
    env["closer"]()
    app = registry["upload2.celery"]
    if app.conf.task_always_eager:
        raise SystemExit(f"pypi-upload2: celery.broker_url is empty in {ini}: its tasks run in the web "
                         "process (eager mode); set a broker, e.g. redis://localhost:6379/0, to run workers")
    engine = registry.get("upload2.engine")

    def forget_parent_connections(**_):
        # Pool processes are forked from this one: never share its database connections.
        engine.dispose(close=False)

    if engine is not None:
        celery.signals.worker_process_init.connect(forget_parent_connections, weak=False)
    return app
