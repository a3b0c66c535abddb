"""The Upload 2.0 release flow: one publishing session per release, the files of all
sessions uploaded in parallel, each file completed, then every session published (or left
staged). Retries are bounded; an error answer (4xx) is reported, never retried."""

from __future__ import annotations

import dataclasses
import datetime
import json
import queue
import threading
import time
import urllib.parse

from .api import RETRY_STATUSES, Api, Cancelled, ProblemError, TransientError, problem_json, retry_after
from .dists import Dist
from .mechanisms import HTTP_POST_BYTES, RESUMABLE, Resumable, post_bytes
from .progress import Reporter, size

# Session creation answered like this: the URL has no Upload 2.0 endpoint.
NO_UPLOAD2 = frozenset({404, 405, 406, 415})
EXTEND_MARGIN = datetime.timedelta(minutes=15)
EXTEND_FOR = 3600
# How long to wait for the server to finish a file's verification or a publish (--wait-timeout),
# and how often to say that it is still going on.
WAIT_TIMEOUT = 600.0
NOTE_EVERY = 30.0
# A session with this status has no stage any more: its stage URL answers 404.
ENDED = frozenset({"published", "canceled"})


class NoUpload2(Exception):
    """The repository URL does not speak Upload 2.0."""

    def __init__(self, problem: ProblemError):
        super().__init__(f"HTTP {problem.status}")
        self.problem = problem


class SessionExists(Exception):
    def __init__(self, release: Release, location: str, problem: ProblemError):
        super().__init__(f"a publishing session for {release.name} {release.version} is already open: {location}")
        self.location, self.problem = location, problem


class FileFailed(Exception):
    def __init__(self, reason):
        super().__init__(str(reason))
        self.reason = reason


class WaitTimeout(Exception):
    """The server was still ``processing`` when ``--wait-timeout`` ran out. Nothing failed:
    the work goes on on the server, and ``session publish`` picks it up."""

    def __init__(self, label: str, waited: float):
        super().__init__(f"{label}: still processing after {seconds(waited)} (--wait-timeout)")
        self.label, self.waited = label, waited


def seconds(value: float) -> str:
    return f"{value:.0f}s"


PUBLISH_AFTER = "vnd-upload2-publish-after"


def schedule(publish_after: str | None) -> dict:
    return {PUBLISH_AFTER: publish_after} if publish_after else {}


def usable_links(body: dict) -> dict:
    """The session's links, less the stage of a session that has ended (it answers 404)."""
    links = dict(body.get("links") or {})
    if body.get("status") in ENDED:
        links.pop("stage", None)
    return links


@dataclasses.dataclass
class Options:
    parallel: int = 4
    stage: bool = False
    resumable: bool = False
    resumable_threshold: int = 16 * 1024 * 1024
    chunk_size: int = 8 * 1024 * 1024
    join: bool = False
    wait_timeout: float = WAIT_TIMEOUT  # 0: no limit
    publish_after: str | None = None  # RFC 3339 UTC: schedule the publish (the index's extension)


@dataclasses.dataclass
class FileResult:
    dist: Dist
    status: str = "waiting"  # waiting, uploading, processing (--wait-timeout ran out), completed, error, canceled
    mechanism: str | None = None
    attempts: int = 0
    resumed: list[int] = dataclasses.field(default_factory=list)
    link: str | None = None
    error: ProblemError | str | None = None
    notices: list[str] = dataclasses.field(default_factory=list)

    def as_json(self) -> dict:
        digests = self.dist._digests or {}
        return {"filename": self.dist.filename, "path": str(self.dist.path), "size": self.dist.size,
                "sha256": digests.get("sha256"), "status": self.status, "mechanism": self.mechanism,
                "attempts": self.attempts, "resumed-from": self.resumed, "link": self.link,
                "notices": self.notices, "error": problem_json(self.error)}


@dataclasses.dataclass
class Release:
    name: str
    version: str
    files: list[FileResult]
    session: dict | None = None
    created: bool = False
    warned: set[str] = dataclasses.field(default_factory=set)

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}".strip()

    @property
    def status(self) -> str | None:
        return None if self.session is None else self.session.get("status")

    @property
    def links(self) -> dict:
        return (self.session or {}).get("links", {})

    def as_json(self) -> dict:
        session = self.session or {}
        return {"name": self.name, "version": self.version, "session": self.links.get("session"),
                "stage": usable_links(session).get("stage"), "status": self.status, "created": self.created,
                "expires-at": session.get("expires-at"), "notices": session.get("notices", []),
                "files": [f.as_json() for f in self.files]}


def _check_session(body, url: str) -> dict:
    links = body.get("links") if isinstance(body, dict) else None
    if not isinstance(links, dict) or not all(isinstance(links.get(k), str) for k in ("session", "upload", "publish")):
        raise ProblemError(502, "Invalid session response", f"{url} answered without the session's links.")
    # Links may be relative to the URL that gave them.
    body["links"] = {k: urllib.parse.urljoin(url, v) for k, v in links.items() if isinstance(v, str)}
    return body


class Uploader:
    def __init__(self, api: Api, reporter: Reporter, options: Options):
        self.api, self.reporter, self.options = api, reporter, options

    # -- publishing sessions ----------------------------------------------------------------

    def open_session(self, url: str, release: Release) -> None:
        try:
            reply = self.api.post(url, {"name": release.name, "version": release.version})
        except ProblemError as exc:
            if exc.status in NO_UPLOAD2 or (exc.status == 400 and not isinstance(exc.body, dict)):
                raise NoUpload2(exc)
            location = exc.headers.get("Location")
            if exc.status != 409 or not location:
                raise
            location = urllib.parse.urljoin(url, location)
            # After a lost answer the session our own first attempt created answers 409.
            if not (exc.retried or self.options.join):
                raise SessionExists(release, location, exc)
            release.created = exc.retried
            release.session = _check_session(self.api.get(location).body, location)
            self.reporter.info(f"{release.label}: using the open session {release.links['session']}")
        else:
            release.session = _check_session(reply.body, url)
            release.created = True
            self.reporter.info(f"{release.label}: session {release.links['session']}")
        for notice in release.session.get("notices") or ():
            self.reporter.info(f"{release.label}: notice: {notice}")

    def refresh(self, release: Release) -> dict:
        release.session = _check_session(self.api.get(release.links["session"]).body, release.links["session"])
        return release.session

    def keep_alive(self, release: Release) -> None:
        """Extend a session about to expire (the PEP's advice), or warn once if it cannot be."""
        try:
            expires = datetime.datetime.strptime(release.session["expires-at"], "%Y-%m-%dT%H:%M:%SZ")
        except (KeyError, TypeError, ValueError):
            return
        left = expires.replace(tzinfo=datetime.UTC) - datetime.datetime.now(datetime.UTC)
        if left > EXTEND_MARGIN:
            return
        if "extend" in release.links:
            reply = self.api.post(release.links["extend"], {"extend-for": EXTEND_FOR})
            release.session = _check_session(reply.body, release.links["extend"])
        elif "extend" not in release.warned:
            release.warned.add("extend")
            self.reporter.warn(f"{release.label}: the session expires at {release.session['expires-at']} and "
                               "the server does not offer extensions")

    def publish(self, release: Release) -> None:
        """Publish and wait for ``published``; raise FileFailed with the reason otherwise, or
        WaitTimeout. A session already ``processing`` (a publish an earlier run stopped waiting
        for) is only waited for, and files still being verified are waited for first."""
        self.wait_for_files(release)

        def keep(body):
            release.session = body

        self.publish_and_wait(release.label, release.links["session"], release.session, _check_session, keep)
        if release.session.get(PUBLISH_AFTER):
            return  # scheduled: the index publishes it then
        if release.status != "published":
            notices = release.session.get("notices") or []
            raise FileFailed(f"the session's status is {release.status}" + "".join(f"\n{n}" for n in notices))

    def publish_and_wait(self, label: str, url: str, body: dict, check, keep) -> None:
        """POST the ``publish`` link of ``body`` (the status of ``url``, a session or a release
        group) unless it is processing already, then wait while it is; each body, through
        ``check``, goes to ``keep`` (so a WaitTimeout leaves the latest one kept)."""
        headers = None
        if body.get("status") != "processing":
            try:
                reply = self.api.post(body["links"]["publish"], schedule(self.options.publish_after))
            except ProblemError as exc:
                if not (exc.retried and exc.status == 409):
                    raise
                reply = self.api.get(url)  # an earlier attempt may have been accepted
                if (reply.body or {}).get("status") not in ("processing", "published"):
                    raise exc
            body, headers = check(reply.body, url), reply.headers
            keep(body)
        if processing(body) and not body.get(PUBLISH_AFTER):
            body, _ = self.wait(label, url, body, headers, processing, "publishing")
            keep(check(body, url))

    def wait_for_files(self, release: Release) -> None:
        """Before a publish: wait while the index is still verifying files of the session."""
        if release.status == "open" and _files_processing(release.session):
            url = release.links["session"]
            body, _ = self.wait(release.label, url, release.session, None, _files_processing,
                                "files are still being verified")
            release.session = _check_session(body, url)

    def _poll_delay(self, headers=None) -> float:
        return retry_after(headers, 1.0)

    def wait(self, label: str, url: str, body: dict | None, headers, busy, doing: str) -> tuple[dict, object]:
        """GET ``url`` (at once when ``body`` is None, then as ``Retry-After`` asks) while
        ``busy(body)``; say so now and then, and raise WaitTimeout after ``wait_timeout``
        seconds (0: no limit). Returns the last body and headers."""
        limit = self.options.wait_timeout
        started, noted = time.monotonic(), None
        while body is None or busy(body):
            if body is not None:
                waited = time.monotonic() - started
                if limit and waited >= limit:
                    raise WaitTimeout(label, waited)
                if noted is None or time.monotonic() - noted >= NOTE_EVERY:
                    upto = f"up to {seconds(limit)} (--wait-timeout)" if limit else "without a limit (--wait-timeout 0)"
                    note = f"{doing}; waiting {upto}" if noted is None else f"still processing after {seconds(waited)}"
                    noted = time.monotonic()
                    self.reporter.state(label, f"processing {seconds(waited)}", line=f"{label}: {note}")
                delay = self._poll_delay(headers)
                self.api.sleep(min(delay, limit - waited) if limit else delay)
            reply = self.api.get(url)
            body, headers = reply.body if isinstance(reply.body, dict) else {}, reply.headers
        return body, headers

    def cancel(self, release: Release, api: Api | None = None) -> None:
        api = api or self.api
        reply = api.delete(release.links["session"])
        if isinstance(reply.body, dict) and reply.body.get("status"):
            release.session = {**release.session, "status": reply.body["status"]}
        else:
            release.session = {**release.session, "status": "canceled"}

    # -- files ------------------------------------------------------------------------------

    def choose_mechanism(self, release: Release, dist: Dist) -> str:
        offered = release.session.get("mechanisms") or [HTTP_POST_BYTES]
        wants_resumable = self.options.resumable or dist.size > self.options.resumable_threshold
        if wants_resumable and RESUMABLE in offered:
            return RESUMABLE
        if self.options.resumable and "resumable" not in release.warned:
            release.warned.add("resumable")
            self.reporter.warn(f"{release.label}: the server does not offer {RESUMABLE}; using {HTTP_POST_BYTES}")
        return HTTP_POST_BYTES

    def upload_all(self, releases: list[Release]) -> None:
        """Upload every file, ``parallel`` at a time across all sessions. A file a server
        refused with 409 while others were in flight is tried again alone afterwards (a
        server need not allow parallel uploads)."""
        # Largest first: the long transfers start at once, the small ones fill the gaps.
        jobs = sorted(((release, result) for release in releases for result in release.files),
                      key=lambda job: -job[1].dist.size)
        deferred = self._run_parallel(jobs, self.options.parallel)
        if deferred:
            self._run_parallel(deferred, 1)

    def _run_parallel(self, jobs, workers: int) -> list:
        pending: queue.Queue = queue.Queue()
        for job in jobs:
            pending.put(job)
        deferred: list = []

        def work():
            while not self.api.cancel.is_set():
                try:
                    release, result = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    self.upload_file(release, result, alone=workers == 1)
                except _Busy:
                    deferred.append((release, result))

        # Daemon threads: Ctrl+C must not wait for a transfer to finish.
        threads = [threading.Thread(target=work, daemon=True) for _ in range(min(workers, len(jobs)) or 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
        if self.api.cancel.is_set():
            raise Cancelled()
        return deferred

    def upload_file(self, release: Release, result: FileResult, *, alone: bool = False) -> None:
        dist, name = result.dist, result.dist.filename
        try:
            self.reporter.state(name, "hashing")
            dist.digests()
            self._upload(release, result, alone)
        except _Busy:
            raise
        except WaitTimeout as exc:
            result.status, result.error = "processing", str(exc)
            self.reporter.state(name, "processing")
            self.reporter.warn(f"{exc}; stopped waiting for it")
        except Cancelled:
            result.status = "canceled"
            self.reporter.state(name, "canceled")
        except Exception as exc:  # noqa: BLE001 - every failure is this file's result
            reason = exc.reason if isinstance(exc, FileFailed) else exc
            result.status, result.error = "error", reason if isinstance(reason, ProblemError) else str(reason)
            self.reporter.state(name, "failed")
            lines = reason.lines() if isinstance(reason, ProblemError) else str(reason).splitlines()
            self.reporter.error([f"{name}: {lines[0]}", *lines[1:]])
        else:
            self.reporter.state(name, "completed", line=f"{name}: completed")

    def _upload(self, release: Release, result: FileResult, alone: bool) -> None:
        dist, name = result.dist, result.dist.filename
        mechanism = self.choose_mechanism(release, dist)
        while True:
            result.attempts += 1
            result.status = "uploading"
            self.keep_alive(release)
            file_session = self._create_file(release, result, mechanism, alone)
            mechanism = result.mechanism
            self.reporter.state(name, f"{'resumable' if mechanism == RESUMABLE else 'uploading'}",
                                line=f"{name}: uploading {size(dist.size)} via {mechanism}")
            try:
                if dist.attestations:
                    self._attest(result, file_session)
                self._transfer(result, file_session)
            except (TransientError, ProblemError) as exc:
                restart = isinstance(exc, TransientError) or exc.status in RETRY_STATUSES
                self._discard(result)  # the PEP: cancel a failed file upload session
                if not restart or mechanism == RESUMABLE or result.attempts > self.api.retries:
                    raise
                delay = self.api.backoff(result.attempts - 1)
                self.reporter.warn(f"{name}: {str(exc).splitlines()[0]}; starting the file over in {delay:.1f}s")
                self.api.sleep(delay)
                continue
            break
        self.reporter.state(name, "completing")
        self._complete(result, file_session)

    def _create_file(self, release: Release, result: FileResult, mechanism: str, alone: bool) -> dict:
        dist = result.dist
        body = {"filename": dist.filename, "size": dist.size, "hashes": {"sha256": dist.digests()["sha256"]},
                "mechanism": mechanism}
        url = release.links["upload"]
        for _ in range(2):
            try:
                reply = self.api.post(url, body)
                break
            except ProblemError as exc:
                if exc.status == 422 and mechanism != HTTP_POST_BYTES:
                    body["mechanism"] = mechanism = HTTP_POST_BYTES  # the required mechanism always works
                    continue
                if exc.status == 409:
                    # Our own lost attempt created it, or an earlier run left it failed:
                    # discard that one and create the file again.
                    entry = self.refresh(release).get("files", {}).get(dist.filename) or {}
                    if entry.get("link") and (exc.retried or entry.get("status") == "error"):
                        self._delete(entry["link"])
                        continue
                if exc.status == 409 and not alone:
                    raise _Busy()
                raise
        else:
            reply = self.api.post(url, body)
        file_session = reply.body if isinstance(reply.body, dict) else {}
        links, described = file_session.get("links") or {}, file_session.get("mechanism") or {}
        if not isinstance(links.get("complete"), str) or not isinstance(described.get("file_url"), str):
            raise ProblemError(502, "Invalid file upload session response", f"{url} answered without its links.")
        file_session["links"] = {k: urllib.parse.urljoin(url, v) for k, v in links.items() if isinstance(v, str)}
        described["file_url"] = urllib.parse.urljoin(url, described["file_url"])
        if isinstance(described.get("attestations_url"), str):
            described["attestations_url"] = urllib.parse.urljoin(url, described["attestations_url"])
        result.link = file_session["links"].get("file-upload-session")
        result.mechanism = described.get("identifier", mechanism)
        result.notices = list(file_session.get("notices") or [])
        return file_session

    def _attest(self, result: FileResult, file_session: dict) -> None:
        """Post the file's PEP 740 attestations before its bytes, as the PEP orders."""
        url = file_session["mechanism"].get("attestations_url")
        if not isinstance(url, str):
            self._discard(result)
            raise FileFailed(f"the index takes no attestations for {result.mechanism} (no attestations_url)")
        data = json.dumps(result.dist.attestations).encode()
        try:
            self.api.request("POST", url, content=lambda: data, headers={"Content-Type": "application/json"})
        except ProblemError as exc:
            self._discard(result)
            raise FileFailed(exc)

    def _transfer(self, result: FileResult, file_session: dict) -> None:
        mechanism = file_session["mechanism"]
        if result.mechanism == RESUMABLE:
            upload = Resumable(self.api, result.dist, mechanism, self.reporter, self.options.chunk_size)
            try:
                upload.run()
            finally:
                result.resumed.extend(upload.resumed)
        elif result.mechanism == HTTP_POST_BYTES:
            post_bytes(self.api, result.dist, mechanism, self.reporter)
        else:
            raise FileFailed(f"the server chose the unknown mechanism {result.mechanism!r}")

    def _complete(self, result: FileResult, file_session: dict) -> None:
        link = result.link or file_session["links"]["complete"]
        try:
            reply = self.api.post(file_session["links"]["complete"])
            body, headers = reply.body, reply.headers
        except ProblemError as exc:
            if not (exc.retried and exc.status == 409 and result.link):
                self._discard(result)
                raise FileFailed(exc)
            body, headers = None, None  # an earlier attempt may have been accepted: ask
        body, headers = self.wait(result.dist.filename, link, body, headers, processing,
                                  "the index is verifying it")
        result.notices = list(body.get("notices") or result.notices)
        if body.get("status") != "completed":
            self._discard(result)
            raise FileFailed(f"the server reports the file {body.get('status')}"
                             + "".join(f"\n{n}" for n in result.notices))
        result.status = "completed"

    def _discard(self, result: FileResult) -> None:
        if result.link:
            self._delete(result.link)

    def _delete(self, link: str) -> None:
        try:
            self.api.delete(link)
        except (ProblemError, TransientError):
            pass  # best effort: the server expires it anyway


def processing(body) -> bool:
    return isinstance(body, dict) and body.get("status") == "processing"


def _files_processing(session: dict) -> bool:
    return any(processing(f) for f in (session.get("files") or {}).values())


class _Busy(Exception):
    """409 on a file while others were uploading: try it again alone."""
