"""The request log and the audit log, through standard ``logging`` (the ini's loggers).

``pypi_upload2.requests``: one line per request to the plugin's routes (the 2.0 API, the
legacy door, the stage): method, route, status, duration, and who, which project and which
session, as loading found them. Never a token or a credential.

``pypi_upload2.audit``: one line per publish and cancel once its transaction commits, and
per token or permission change made with the CLI.
"""

from __future__ import annotations

import logging
import time

requests_log = logging.getLogger("pypi_upload2.requests")
audit_log = logging.getLogger("pypi_upload2.audit")

# What loading found, for the request's log line: principal key, project, session id.
CONTEXT = "upload2.log"


def note(request, **fields) -> None:
    """Record who/what the request is about, for its log line."""
    request.environ.setdefault(CONTEXT, {}).update(fields)


def _line(request, status, started: float) -> str:
    route = request.matched_route
    fields = request.environ.get(CONTEXT, {})
    # The route's pattern, not the path: a session's URL holds its token, a capability.
    parts = [f"{request.method} {route.pattern}", f"route={route.name}", f"status={status}",
             f"ms={(time.perf_counter() - started) * 1000:.1f}"]
    parts += [f"{key}={fields[key]}" for key in ("user", "project", "session") if fields.get(key) is not None]
    return " ".join(parts)


def request_log_tween_factory(handler, registry):
    def request_log_tween(request):
        started = time.perf_counter()
        try:
            response = handler(request)
        except Exception:
            if _ours(request):
                requests_log.info(_line(request, 500, started))
            raise
        if _ours(request):
            requests_log.info(_line(request, response.status_code, started))
        return response

    return request_log_tween


def _ours(request) -> bool:
    route = request.matched_route
    return route is not None and route.name.startswith("upload2.")


def audit(request, message: str) -> None:
    """Log ``message`` to the audit log once the request's (or task's) transaction commits."""
    def hook(committed: bool) -> None:
        if committed:
            audit_log.info(message)

    request.tm.get().addAfterCommitHook(hook)


def includeme(config):
    config.add_tween("pypi_upload2.logs.request_log_tween_factory")
