"""HTTP for the release client: one httpx session shared by the upload threads, credentials
sent only to the index's own origin, bounded retries with backoff for what a retry can fix
(network errors, 429, 5xx), and error answers turned into RFC 9457 problems for the user."""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from .config import Credentials, origin, redact

CONTENT_TYPE = "application/vnd.pypi.upload.v2+json"
PROBLEM = "application/problem+json"
META = {"api-version": "2.0"}
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("pypi-upload2")
    except PackageNotFoundError:  # pragma: no cover - a source checkout without metadata
        return "0"


USER_AGENT = f"pypi-upload2/{_version()} httpx/{httpx.__version__}"


class Cancelled(Exception):
    """The user interrupted the upload (Ctrl+C)."""


class TransientError(Exception):
    """The network failed on every attempt."""


class ProblemError(Exception):
    """The server answered with an error: an RFC 9457 problem, or what it sent instead."""

    def __init__(self, status: int, title: str, detail: str = "", errors=(), *, body: Any = None,
                 headers=None, retried: bool = False, url: str = ""):
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail
        self.errors = [e for e in errors if isinstance(e, dict)]
        self.body, self.headers, self.retried, self.url = body, headers or httpx.Headers(), retried, url

    @classmethod
    def from_response(cls, response: httpx.Response, *, retried: bool = False) -> ProblemError:
        body = _json(response)
        url = redact(str(response.request.url))
        if isinstance(body, dict) and ("title" in body or "detail" in body):
            # The PEP's example spells it "details"; RFC 9457 says "detail".
            detail = body.get("detail") or body.get("details") or ""
            return cls(response.status_code, str(body.get("title") or response.reason_phrase), str(detail),
                       body.get("errors") or (), body=body, headers=response.headers, retried=retried, url=url)
        text = "" if body is not None else " ".join(response.text.split())[:300]
        if _is_html(response):  # an error page, not an API's answer: never shown as text
            text = f"The server answered with an HTML page ({content_type(response.headers) or 'text/html'})."
        if response.is_redirect:
            text = f"The server redirects to {redact(response.headers.get('Location', '?'))}; use that URL."
        return cls(response.status_code, response.reason_phrase or "HTTP error", text, body=body,
                   headers=response.headers, retried=retried, url=url)

    @property
    def content_type(self) -> str:
        return content_type(self.headers)

    @property
    def is_problem(self) -> bool:
        """An RFC 9457 problem from an Upload 2.0 endpoint (it carries the 2.0 ``meta``)."""
        return isinstance(self.body, dict) and isinstance(self.body.get("meta"), dict)

    def lines(self) -> list[str]:
        """Title, detail and each error, for the user."""
        out = [f"{self.title} (HTTP {self.status})"]
        if self.detail and self.detail != self.title:
            out.append(self.detail)
        for error in self.errors:
            source, message = error.get("source"), error.get("message", "")
            out.append(f"- {source}: {message}" if source else f"- {message}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def as_json(self) -> dict:
        return {"status": self.status, "title": self.title, "detail": self.detail, "errors": self.errors}


def problem_json(error) -> dict | None:
    """An error as ``--json`` shows it: the server's problem (status, title, detail, errors),
    or, for one the client found itself (``lines``, a message or an exception), the same
    shape with ``status`` null. ``errors`` entries are ``{"source", "message"}``."""
    if error is None or isinstance(error, dict):
        return error
    if isinstance(error, ProblemError):
        return error.as_json()
    lines = str(error).splitlines() if isinstance(error, (str, Exception)) else list(error)
    return {"status": None, "title": lines[0] if lines else "", "detail": "\n".join(lines[1:]), "errors": []}


@dataclasses.dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: Any
    url: str
    retried: bool  # an earlier attempt may have reached the server

    def retry_after(self, default: float = 1.0) -> float:
        return retry_after(self.headers, default)


def retry_after(headers, default: float = 1.0) -> float:
    """Seconds the server asks to wait (delta-seconds or an HTTP-date), kept within reason."""
    value = headers.get("Retry-After") if headers is not None else None
    seconds = default
    if value:
        value = value.strip()
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                pass
    return min(max(seconds, 0.1), 60.0)


def content_type(headers) -> str:
    """The media type of an answer, without its parameters ("" when it names none)."""
    return (headers.get("Content-Type") or "").split(";")[0].strip().lower() if headers is not None else ""


def _is_html(response: httpx.Response) -> bool:
    if content_type(response.headers) in ("text/html", "application/xhtml+xml"):
        return True
    return response.text[:200].lstrip().lower().startswith(("<!doctype html", "<html"))


def _json(response: httpx.Response):
    kind = content_type(response.headers)
    if kind.endswith("json"):
        try:
            return response.json()
        except ValueError:
            return None
    return None


class OriginAuth(httpx.Auth):
    """HTTP Basic for the index's own origin only: links to another host (a CDN, a storage
    service) never see the credentials."""

    def __init__(self, base_url: str, credentials: Credentials | None):
        self.origin = origin(base_url)
        self.header = None
        if credentials is not None:
            raw = f"{credentials.username}:{credentials.password}".encode()
            self.header = "Basic " + base64.b64encode(raw).decode()

    def auth_flow(self, request):
        if self.header and origin(str(request.url)) == self.origin:
            request.headers["Authorization"] = self.header
        yield request


class Api:
    """Requests with retries; ``cancel`` (set on Ctrl+C) stops waits and body streams."""

    def __init__(self, base_url: str, credentials: Credentials | None, *, retries: int = 5,
                 timeout: float = 60.0, connections: int = 8, cancel: threading.Event | None = None,
                 on_retry: Callable[[str], None] | None = None, transport: httpx.BaseTransport | None = None):
        self.retries = retries
        self.cancel = cancel or threading.Event()
        self.on_retry = on_retry or (lambda message: None)
        self.http = httpx.Client(
            auth=OriginAuth(base_url, credentials), timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            headers={"User-Agent": USER_AGENT}, follow_redirects=False, transport=transport)

    def close(self) -> None:
        self.http.close()

    def sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Cancelled()

    def backoff(self, attempt: int) -> float:
        return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt) * random.uniform(0.5, 1.0)

    def request(self, method: str, url: str, *, json_body: dict | None = None,
                content: Callable[[], Iterable[bytes] | bytes] | None = None, headers: dict | None = None,
                retry: bool = True) -> Reply:
        """Send; retry network errors and 429/5xx (when ``retry``) with backoff; raise
        ProblemError for an error answer. ``content`` makes a fresh body for each attempt."""
        headers = dict(headers or {})
        data = None
        if json_body is not None:
            data = json.dumps({"meta": META, **json_body}).encode()
            headers.setdefault("Content-Type", CONTENT_TYPE)
            headers.setdefault("Accept", f"{CONTENT_TYPE}, {PROBLEM}")
        retried = False
        attempt = 0
        while True:
            if self.cancel.is_set():
                raise Cancelled()
            try:
                body = data if content is None else content()
                response = self.http.request(method, url, content=body, headers=headers)
            except httpx.TransportError as exc:
                if self.cancel.is_set():
                    raise Cancelled()
                reason = describe_transport_error(exc)
                if not retry or attempt >= self.retries:
                    raise TransientError(f"{method} {redact(url)}: {reason}") from None
                retried = True
                delay = self.backoff(attempt)
                self.on_retry(f"{method} {redact(url)} failed ({reason}); retrying in {delay:.1f}s")
            else:
                status = response.status_code
                if status in RETRY_STATUSES and retry and attempt < self.retries:
                    retried = True
                    delay = max(self.backoff(attempt), retry_after(response.headers, 0.0))
                    self.on_retry(f"{method} {redact(url)}: HTTP {status}; retrying in {delay:.1f}s")
                elif status >= 400 or 300 <= status < 400:
                    raise ProblemError.from_response(response, retried=retried)
                else:
                    return Reply(status, response.headers, _json(response), str(response.request.url), retried)
            attempt += 1
            self.sleep(delay)

    def get(self, url: str, **kw) -> Reply:
        return self.request("GET", url, headers={"Accept": f"{CONTENT_TYPE}, {PROBLEM}"}, **kw)

    def post(self, url: str, body: dict | None = None, **kw) -> Reply:
        return self.request("POST", url, json_body=body or {}, **kw)

    def delete(self, url: str, **kw) -> Reply:
        return self.request("DELETE", url, headers={"Accept": f"{CONTENT_TYPE}, {PROBLEM}"}, **kw)


def describe_transport_error(exc: httpx.TransportError) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if text != exc.__class__.__name__ else text
