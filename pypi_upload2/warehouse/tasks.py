"""The plugin's work on Warehouse's Celery: its task decorator, its after-commit sending,
and its periodic-task directive. Each task runs in the one transaction Warehouse's task
base opens."""

from __future__ import annotations

from celery.schedules import crontab
from zope.interface import implementer

from ..interfaces import ITaskQueue
from ..services import expiry, files, publication


@implementer(ITaskQueue)
class WarehouseTaskQueue:
    """``request.task(...).delay`` sends after the request's transaction commits."""

    def __init__(self, request):
        self.request = request

    @classmethod
    def create_service(cls, context, request):
        return cls(request)

    def enqueue(self, name: str, *args) -> None:
        self.request.task(TASKS[name]).delay(*args)


def upload2_verify_file(request, file_id: int) -> None:
    files.verify_deferred(request, file_id)


def upload2_publish_session(request, session_id: int) -> None:
    publication.conclude(request, session_id, publication.check(request, session_id))


def upload2_resend_processing(request) -> None:
    expiry.resend_processing(request)


def upload2_expire_sessions(request) -> None:
    expiry.expire_sessions(request)
    expiry.expire_files(request)


def upload2_purge_ended_sessions(request) -> None:
    expiry.purge_ended_sessions(request)


TASKS = {"verify_file": upload2_verify_file, "publish_session": upload2_publish_session}
PERIODIC = (upload2_resend_processing, upload2_expire_sessions, upload2_purge_ended_sessions)


def includeme(config):
    app = config.registry["celery.app"]
    for func in (*TASKS.values(), *PERIODIC):
        app.task(shared=False, acks_late=True, reject_on_worker_lost=True, ignore_result=True)(func)
    for func in PERIODIC:
        config.add_periodic_task(crontab(minute="*"), func)
