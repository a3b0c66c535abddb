"""Domain errors; one exception view renders them as RFC 9457 problem details."""

from __future__ import annotations


class Problem(Exception):
    """An error the API reports to its client as ``application/problem+json``."""

    status = 400
    type = "about:blank"
    headers: dict[str, str]

    def __init__(self, title: str, detail: str | None = None, *, source: str | None = None,
                 errors: list[dict] | None = None, headers: dict | None = None, **extra):
        super().__init__(title)
        self.title = title
        self.detail = detail or title
        if errors is None:
            errors = [{"source": source or "request", "message": self.detail}]
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict:
        return {
            "type": self.type,
            "status": self.status,
            "title": self.title,
            "detail": self.detail,
            "meta": {"api-version": "2.0"},
            "errors": self.errors,
            **self.extra,
        }


class BadRequest(Problem):
    status = 400


class Unauthorized(Problem):
    status = 401


class Forbidden(Problem):
    status = 403


class NotFound(Problem):
    status = 404


class MethodNotAllowed(Problem):
    status = 405


class Conflict(Problem):
    status = 409


class RequestTimeout(Problem):
    status = 408


class ContentTooLarge(Problem):
    status = 413


class UnsupportedMediaType(Problem):
    status = 415


class RangeNotSatisfiable(Problem):
    status = 416


class UnprocessableContent(Problem):
    status = 422


class InternalServerError(Problem):
    status = 500


class FileExists(Conflict):
    """A filename the host's namespace holds already: published, reserved by a publish in
    progress, or once used and deleted."""


class SecondSdist(Conflict):
    """An sdist for a release that has one (in the index or in the session)."""


class PublishWouldFail(Conflict):
    """A preflight's answer: every problem a publish of the session would fail with now."""


class FilenameConflict(Conflict):
    """Filenames the host's namespace refuses when a publish reserves them; ``errors`` names
    each file."""

    def __init__(self, errors: list[dict]):
        super().__init__("Filename conflict", "Some files conflict with files already in the release.",
                         errors=errors)


class ServiceUnavailable(Problem):
    status = 503


class InsufficientStorage(Problem):
    """The storage refused a write: full, or over its quota (``services.cleanup.storage_full``)."""

    status = 507
