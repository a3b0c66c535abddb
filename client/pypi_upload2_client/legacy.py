"""The legacy (1.0) upload API, spoken as twine speaks it: one ``multipart/form-data`` POST
per file carrying the core metadata and the file, published at once. Used when the
repository URL has no Upload 2.0 endpoint (or with ``--protocol legacy``)."""

from __future__ import annotations

import dataclasses
import json
import secrets

from packaging.metadata import parse_email

from .api import Api, Cancelled, ProblemError, TransientError, problem_json
from .dists import Dist, DistError, core_metadata
from .progress import Reporter, size

# Core metadata fields whose form field has another name or shape (as twine sends them).
RENAMED = {"platforms": "platform", "supported_platforms": "supported_platform", "license_files": "license_file"}
# A legacy upload endpoint refuses a file with 400, 403 or 409; these say nothing takes uploads here.
NOT_AN_ENDPOINT = frozenset({404, 405})


class NoLegacy(Exception):
    """The URL answered the first file as no legacy upload endpoint would."""

    def __init__(self, problem: ProblemError, results: list[LegacyResult]):
        super().__init__(f"HTTP {problem.status}")
        self.problem, self.results = problem, results


def form_fields(dist: Dist) -> list[tuple[str, str]]:
    raw, _ = parse_email(core_metadata(dist))
    fields = [(":action", "file_upload"), ("protocol_version", "1"), ("filetype", dist.packagetype),
              ("pyversion", dist.python_tag)]
    for key, value in raw.items():
        name = RENAMED.get(key, key)
        if key == "keywords":
            fields.append((name, ", ".join(value)))
        elif key == "project_urls":
            fields += [(name, f"{label}, {url}") for label, url in value.items()]
        elif isinstance(value, list):
            fields += [(name, item) for item in value]
        elif isinstance(value, str):
            fields.append((name, value))
    if not raw.get("name") or not raw.get("version"):
        raise DistError(f"{dist.filename}: its metadata has no Name or Version")
    digests = dist.digests()
    fields += [("sha256_digest", digests["sha256"]), ("blake2_256_digest", digests["blake2_256"])]
    if dist.attestations:  # PEP 740, as twine --attestations sends them
        fields.append(("attestations", json.dumps(dist.attestations)))
    return fields


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


class Form:
    """A streamed multipart body: the fields, then the file; its length is known up front."""

    def __init__(self, dist: Dist, fields: list[tuple[str, str]]):
        self.dist = dist
        self.boundary = "pypi-upload2-" + secrets.token_hex(16)
        head = bytearray()
        for name, value in fields:
            head += (f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_escape(name)}"\r\n\r\n'
                     ).encode() + value.encode() + b"\r\n"
        head += (f'--{self.boundary}\r\nContent-Disposition: form-data; name="content"; '
                 f'filename="{_escape(dist.filename)}"\r\nContent-Type: application/octet-stream\r\n\r\n').encode()
        self.head, self.tail = bytes(head), f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self.head) + self.dist.size + len(self.tail)

    def stream(self, api: Api, reporter: Reporter):
        reporter.position(self.dist.filename, 0)
        yield self.head
        for chunk in self.dist.chunks():
            if api.cancel.is_set():
                raise Cancelled()
            yield chunk
            reporter.advance(self.dist.filename, len(chunk))
        yield self.tail


@dataclasses.dataclass
class LegacyResult:
    dist: Dist
    status: str = "waiting"  # waiting, published, error, canceled
    error: ProblemError | str | None = None

    def as_json(self) -> dict:
        return {"filename": self.dist.filename, "path": str(self.dist.path), "size": self.dist.size,
                "sha256": (self.dist._digests or {}).get("sha256"), "status": self.status,
                "error": problem_json(self.error)}


def upload(api: Api, url: str, dists: list[Dist], reporter: Reporter) -> list[LegacyResult]:
    """Upload the files one at a time, in order, stopping at the first failure (as twine does).
    Raise NoLegacy when the first file is answered as no upload endpoint would."""
    results = [LegacyResult(d) for d in dists]
    for index, result in enumerate(results):
        name = result.dist.filename
        try:
            reporter.state(name, "hashing")
            form = Form(result.dist, form_fields(result.dist))
            reporter.state(name, "uploading", line=f"{name}: uploading {size(result.dist.size)} (legacy API)")
            # A retry sends the whole form again; the index answers an identical file as uploaded.
            api.request("POST", url, content=lambda: form.stream(api, reporter),
                        headers={"Content-Type": form.content_type, "Content-Length": str(len(form))})
        except Cancelled:
            result.status = "canceled"
            raise
        except (ProblemError, TransientError, DistError, OSError) as exc:
            result.status, result.error = "error", exc if isinstance(exc, ProblemError) else str(exc)
            reporter.state(name, "failed")
            if index == 0 and isinstance(exc, ProblemError) and exc.status in NOT_AN_ENDPOINT:
                raise NoLegacy(exc, results)
            lines = exc.lines() if isinstance(exc, ProblemError) else [str(exc)]
            reporter.error([f"{name}: {lines[0]}", *lines[1:]])
            break
        result.status = "published"
        reporter.state(name, "published", line=f"{name}: published")
    return results
