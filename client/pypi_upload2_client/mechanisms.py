"""Executing a file upload mechanism: getting one file's bytes to the server.

``http-post-bytes`` (the PEP's required mechanism) is one POST of the whole file; when it
fails on the network the caller starts the file over with a new file upload session.
``vnd-upload2-resumable-v1`` follows draft-ietf-httpbis-resumable-upload: ``HEAD`` gives
the offset and the limits, ``PATCH`` appends from the offset, and after a failure the
client asks ``HEAD`` for the offset again and continues from there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .api import RETRY_STATUSES, Api, Cancelled, ProblemError, TransientError
from .dists import Dist
from .progress import Reporter

HTTP_POST_BYTES = "http-post-bytes"
RESUMABLE = "vnd-upload2-resumable-v1"
PARTIAL_UPLOAD = "application/partial-upload"
MISMATCHING_OFFSET = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"


def stream(api: Api, dist: Dist, reporter: Reporter, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """The bytes from ``start`` to ``end``, reported as they go; Ctrl+C stops it."""
    reporter.position(dist.filename, start)
    for chunk in dist.chunks(start, end):
        if api.cancel.is_set():
            raise Cancelled()
        yield chunk
        reporter.advance(dist.filename, len(chunk))


def post_bytes(api: Api, dist: Dist, mechanism: dict, reporter: Reporter) -> None:
    # Not retried here: the PEP has a failed transfer start over in a new file upload session.
    api.request("POST", mechanism["file_url"], content=lambda: stream(api, dist, reporter), retry=False,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(dist.size)})


# -- resumable -----------------------------------------------------------------------------------

def _sf_integer(value: str | None) -> int | None:
    value = None if value is None else value.split(";", 1)[0].strip()
    return int(value) if value and re.fullmatch(r"[0-9]{1,15}", value) else None


def parse_limits(value: str | None) -> dict[str, int]:
    """``Upload-Limit``, a structured-field dictionary of integers (others are ignored)."""
    limits = {}
    for member in (value or "").split(","):
        key, sep, number = member.strip().partition("=")
        parsed = _sf_integer(number) if sep else None
        if parsed is not None and re.fullmatch(r"[a-z*][a-z0-9_.*-]*", key):
            limits[key] = parsed
    return limits


class Resumable:
    """One resumable upload. ``resumed`` records the offsets the server reported after a
    failure, where the upload went on from."""

    def __init__(self, api: Api, dist: Dist, mechanism: dict, reporter: Reporter, chunk_size: int):
        self.api, self.dist, self.reporter = api, dist, reporter
        self.url = mechanism["file_url"]
        self.chunk_size = chunk_size
        self.resumed: list[int] = []

    def offset(self) -> tuple[int, bool, dict[str, int]]:
        """Offset retrieval: the server's offset, whether the upload is complete, its limits."""
        reply = self.api.request("HEAD", self.url)  # safe, so retried on network errors
        offset = _sf_integer(reply.headers.get("Upload-Offset"))
        if offset is None or offset > self.dist.size:
            raise ProblemError(reply.status, "Invalid resumable upload response",
                               f"HEAD {self.url} gave no valid Upload-Offset.")
        return offset, reply.headers.get("Upload-Complete", "").strip() == "?1", parse_limits(
            reply.headers.get("Upload-Limit"))

    def append_size(self, limits: dict[str, int]) -> int:
        size = self.chunk_size
        if "max-append-size" in limits:
            size = min(size, limits["max-append-size"])
        if "min-append-size" in limits:
            size = max(size, limits["min-append-size"])
        return max(size, 1)

    def run(self) -> None:
        offset, complete, limits = self.offset()
        if "max-size" in limits and self.dist.size > limits["max-size"]:
            raise ProblemError(413, "File too large", f"The upload takes at most {limits['max-size']} bytes.")
        if offset:
            self.resumed.append(offset)  # a file upload session reused after an earlier run
        step = self.append_size(limits)
        failures = 0
        while not complete:
            end = min(self.dist.size, offset + step)
            last = end == self.dist.size
            try:
                reply = self.api.request(
                    "PATCH", self.url, retry=False,
                    content=lambda: stream(self.api, self.dist, self.reporter, offset, end),
                    headers={"Upload-Offset": str(offset), "Upload-Complete": "?1" if last else "?0",
                             "Upload-Length": str(self.dist.size), "Content-Type": PARTIAL_UPLOAD,
                             "Content-Length": str(end - offset)})
            except (TransientError, ProblemError) as exc:
                if isinstance(exc, ProblemError) and not self._resumable_failure(exc):
                    raise
                failures += 1
                if failures > self.api.retries:
                    raise
                reason = str(exc).splitlines()[0]
                delay = self.api.backoff(failures - 1)
                self.reporter.warn(f"{self.dist.filename}: append at {offset} failed ({reason}); "
                                   f"resuming from the server's offset in {delay:.1f}s")
                self.api.sleep(delay)
                offset, complete, limits = self.offset()
                self.resumed.append(offset)
                self.reporter.position(self.dist.filename, offset)
                self.reporter.state(self.dist.filename, "resuming",
                                    line=f"{self.dist.filename}: the server has {offset} of {self.dist.size} bytes; "
                                         "resuming there")
                continue
            acknowledged = _sf_integer(reply.headers.get("Upload-Offset"))
            offset = end if acknowledged is None else acknowledged
            complete = reply.headers.get("Upload-Complete", "").strip() == "?1" or (last and offset == end)
        self.reporter.position(self.dist.filename, self.dist.size)

    def _resumable_failure(self, exc: ProblemError) -> bool:
        """Failures after which asking the server for its offset and going on is right: a
        mismatching offset (409), an append still being processed (409), a server error."""
        return exc.status == 409 or exc.status in RETRY_STATUSES
