"""Distribution bytes in an S3-compatible object store (``upload2.storage_backend = s3``), so
that any number of web hosts and workers share them with no shared disk.

Writers stream into multipart uploads a part at a time; resumable appends become the parts
of one multipart upload per file, numbered in order and assembled when the file completes;
reads are ranged GETs. Nothing is held in memory beyond two parts (one sent while the next
is received).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import io
import logging
import tempfile

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from pyramid.exceptions import ConfigurationError
from zope.interface import implementer

from ..interfaces import IFileStorage
from . import StorageError, StorageUnavailable
from .faults import reachable
from .known import KnownUploads
from .ranged import ranged_reader

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# What the start-up check says of the store's answer (S3's error codes).
BUCKET_ERRORS = {
    "NoSuchBucket": "the bucket does not exist",
    "InvalidAccessKeyId": "the store does not know the access key (upload2.s3_access_key_id)",
    "SignatureDoesNotMatch": "the secret key is wrong (upload2.s3_secret_access_key)",
    "AccessDenied": "the credentials may not list the bucket",
    "PermanentRedirect": "the bucket is in another region (upload2.s3_region)",
    "AuthorizationHeaderMalformed": "the region is wrong (upload2.s3_region)",
}
# An append is spooled to disk past this much, before it is sent as one part.
SPOOL_MEMORY = 1 * MiB


def make_client(settings):
    options = {"region_name": settings.s3_region or None, "endpoint_url": settings.s3_endpoint_url or None}
    if settings.s3_access_key_id:
        options.update(aws_access_key_id=settings.s3_access_key_id,
                       aws_secret_access_key=settings.s3_secret_access_key)
    # Checksums only where the API requires them: many S3-compatible stores refuse the
    # newer trailing checksums; the plugin verifies every file's own digests anyway.
    # Bounded waits and retries (the settings'): past them, a store that does not answer fails
    # the request with 503 (faults.py).
    config = Config(request_checksum_calculation="when_required", response_checksum_validation="when_required",
                    connect_timeout=settings.s3_connect_timeout, read_timeout=settings.s3_read_timeout,
                    retries={"mode": "standard", "total_max_attempts": settings.s3_max_attempts},
                    s3={"addressing_style": settings.s3_addressing_style or "auto"})
    return boto3.session.Session().client("s3", config=config, **options)


@implementer(IFileStorage)
class S3FileStorage:
    def __init__(self, client, bucket: str, *, prefix: str = "", min_part_size: int = 5 * MiB,
                 part_size: int = 8 * MiB, url_expiry: int = 300, spool_dir: str | None = None):
        if not bucket:
            raise ValueError("upload2.s3_bucket must be set for the s3 storage backend")
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.min_part_size = min_part_size
        self.part_size, self.url_expiry, self.spool_dir = max(part_size, min_part_size), url_expiry, spool_dir
        self.known = KnownUploads()

    @classmethod
    def from_settings(cls, settings) -> S3FileStorage:
        return cls(make_client(settings), settings.s3_bucket, prefix=settings.s3_prefix,
                   min_part_size=settings.s3_min_part_size, part_size=settings.s3_part_size, url_expiry=settings.s3_url_expiry,
                   spool_dir=settings.s3_spool_dir or None)

    @classmethod
    def create_service(cls, context, request):
        # One client per process: boto3 clients are thread-safe and costly to build.
        registry = request.registry
        if "upload2.s3_storage" not in registry:
            registry["upload2.s3_storage"] = cls.from_settings(registry["upload2.settings"])
        return registry["upload2.s3_storage"]

    @classmethod
    def check_settings(cls, registry) -> None:
        """At the app's start (web process, worker): wrong credentials, a missing bucket
        or an endpoint out of reach stop it with a message saying which, not the first upload."""
        storage = registry["upload2.s3_storage"] = cls.from_settings(registry["upload2.settings"])
        try:
            # What the app does most (ListBucket); unlike HEAD, the answer names the error.
            storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=storage.prefix, MaxKeys=1)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            cause = BUCKET_ERRORS.get(error.get("Code"), f"the store answered {status}")
            raise ConfigurationError(f"{storage.where()}: {cause} ({error.get('Code')}: {error.get('Message')})")
        except NoCredentialsError:
            raise ConfigurationError(f"{storage.where()}: no credentials: set upload2.s3_access_key_id and "
                                     "upload2.s3_secret_access_key, or give boto3 its own (AWS_* variables, a role)")
        except BotoCoreError as exc:
            raise ConfigurationError(f"{storage.where()}: the endpoint cannot be reached: {exc}")

    def where(self) -> str:
        return f"upload2.s3_bucket {self.bucket!r} at {self.client.meta.endpoint_url}"

    def _key(self, key: str) -> str:
        return self.prefix + key

    # -- whole objects -----------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self, key: str):
        writer = _MultipartWriter(self, self._key(key))
        with reachable():
            try:
                yield writer
                writer.finish()
            except BaseException:
                writer.abort()
                raise

    def open(self, key: str):
        size = self.size(key)
        if size is None:
            raise FileNotFoundError(key)
        return ranged_reader(self.client, self.bucket, self._key(key), size)

    @reachable()
    def size(self, key: str) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    @reachable()
    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        self.discard_parts(key)

    @reachable()
    def discard_parts(self, key: str) -> None:
        self.known.forget(self._key(key))
        for upload in self._uploads(self._key(key)):
            self._abort(upload["Key"], upload["UploadId"])

    @reachable()
    def copy(self, source: str, target: str) -> None:
        # Server-side, in parts when large: the bytes never pass through this process.
        self.client.copy({"Bucket": self.bucket, "Key": self._key(source)}, self.bucket, self._key(target))

    @reachable()
    def move(self, source: str, target: str) -> None:
        self.copy(source, target)
        self.client.delete_object(Bucket=self.bucket, Key=self._key(source))

    def download_url(self, key: str, filename: str, content_type: str) -> str:
        params = {"Bucket": self.bucket, "Key": self._key(key), "ResponseContentType": content_type}
        if content_type == "application/octet-stream":
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=self.url_expiry)

    # -- parts -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def appender(self, key: str, offset: int):
        full = self._key(key)
        known = self.known.at(full, offset)
        if known is None:
            with reachable():
                upload_id, parts = self._acknowledged(full, offset, create=True)
            known = upload_id, len(parts)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, dir=self.spool_dir) as spool, reachable():
            yield spool
            length = spool.tell()
            if not length:
                return
            spool.seek(0)
            # Known again once this part is stored: if it fails (the upload aborted in the store
            # meanwhile, say), the append's retry lists what the store holds.
            self.known.forget(full)
            upload_id, parts = known
            # The part after the acknowledged ones: it replaces one an append that did not
            # commit may have left under the same number.
            self.client.upload_part(Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=parts + 1,
                                    Body=spool, ContentLength=length)
            self.known.remember(full, upload_id, parts + 1, offset + length)

    @reachable()
    def assemble(self, key: str, size: int) -> None:
        full = self._key(key)
        self.known.forget(full)
        if not self._uploads(full):
            return  # assembled already, or nothing was appended
        upload_id, parts = self._acknowledged(full, size)
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=full, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]})
        # An append whose first request reached the store but not its answer began another.
        for upload in self._uploads(full):
            self._abort(full, upload["UploadId"])

    @reachable()
    def unfinished(self, before: datetime.datetime) -> list[str]:
        return [upload["Key"].removeprefix(self.prefix) for upload in self._uploads(self.prefix, exact=False)
                if upload["Initiated"] < before]

    def _uploads(self, full_key: str, *, exact: bool = True) -> list[dict]:
        """The multipart uploads in progress on ``full_key`` (under it, unless ``exact``),
        oldest first."""
        uploads = []
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=full_key):
            uploads += [u for u in page.get("Uploads", ()) if not exact or u["Key"] == full_key]
        return sorted(uploads, key=lambda u: u["Initiated"])

    def _acknowledged(self, full_key: str, offset: int, *, create: bool = False) -> tuple[str, list[dict]]:
        """The multipart upload of ``full_key`` and its parts that make up the first ``offset``
        bytes; parts past them belong to appends that never committed."""
        uploads = self._uploads(full_key)
        if not uploads:
            if offset or not create:
                raise StorageError(f"no parts are stored for {full_key!r} (offset {offset})")
            return self.client.create_multipart_upload(Bucket=self.bucket, Key=full_key)["UploadId"], []
        upload_id = uploads[0]["UploadId"]
        parts, total = [], 0
        pages = self.client.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=full_key, UploadId=upload_id)
        for part in sorted((p for page in pages for p in page.get("Parts", ())), key=lambda p: p["PartNumber"]):
            if total == offset:
                break
            if part["PartNumber"] != len(parts) + 1:
                break
            parts.append(part)
            total += part["Size"]
        if total != offset:
            raise StorageError(f"the parts of {full_key!r} hold {total} bytes, not the recorded {offset}")
        return upload_id, parts

    def _abort(self, full_key: str, upload_id: str) -> None:
        with contextlib.suppress(self.client.exceptions.NoSuchUpload):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload_id)


class _PartBody(io.RawIOBase):
    """A seekable reader over a part buffer, so that the client streams the part from it (and
    rewinds it for a retry) without a copy of its own."""

    def __init__(self, view: memoryview):
        self.view, self.position = view, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        count = min(len(target), len(self.view) - self.position)
        target[:count] = self.view[self.position:self.position + count]
        self.position += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: len(self.view)}[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position


class _MultipartWriter:
    """A write-only file that sends every ``part_size`` bytes as a part of a multipart upload
    (begun with the first full part), and a smaller file as one PUT.

    A part is sent on a thread of its own while the next one is received, so that a request
    takes about as long as its slower half, not both; one part at most is in flight. Two part
    buffers take turns, filled in place, so that memory is two parts whatever the file's size
    and whenever the garbage collector runs."""

    def __init__(self, storage: S3FileStorage, full_key: str):
        self.storage, self.key = storage, full_key
        # The first part is gathered as chunks, so that a small file never takes a whole part's
        # buffer; the buffers come with the multipart upload.
        self.chunks: list[bytes] = []
        self.filling: bytearray | None = None
        self.spare: bytearray | None = None  # the buffer of the part in flight, filled next
        self.filled = 0
        self.upload_id: str | None = None
        self.parts: list[dict] = []
        self.sender: concurrent.futures.ThreadPoolExecutor | None = None
        self.in_flight: concurrent.futures.Future | None = None

    def write(self, data) -> int:
        view, part_size = memoryview(data).cast("B"), self.storage.part_size
        while view:
            taken = view[:part_size - self.filled]
            if self.filling is None:
                self.chunks.append(bytes(taken))
            else:  # in place: a buffer shared with a sender never grows
                self.filling[self.filled:self.filled + len(taken)] = taken
            self.filled += len(taken)
            view = view[len(taken):]
            if self.filled == part_size:
                self._send_part()
        return len(data)

    def _gather(self) -> bytearray:
        buffer, position = bytearray(self.storage.part_size), 0
        for chunk in self.chunks:
            buffer[position:position + len(chunk)] = chunk
            position += len(chunk)
        self.chunks = []
        return buffer

    def _send_part(self) -> None:
        client, bucket = self.storage.client, self.storage.bucket
        if self.upload_id is None:
            self.upload_id = client.create_multipart_upload(Bucket=bucket, Key=self.key)["UploadId"]
            self.sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="upload2-s3-part")
            self.filling = self._gather()
        # The part in flight first: a failure fails this write, in the request's thread, and
        # its buffer is free to be filled next.
        self._settle()
        number = len(self.parts) + 1
        self.in_flight = self.sender.submit(self._upload_part, number, _PartBody(memoryview(self.filling)[:self.filled]))
        if self.spare is None:
            self.spare = bytearray(self.storage.part_size)
        self.filling, self.spare, self.filled = self.spare, self.filling, 0

    def _upload_part(self, number: int, body: _PartBody) -> dict:
        reply = self.storage.client.upload_part(Bucket=self.storage.bucket, Key=self.key, UploadId=self.upload_id,
                                                PartNumber=number, Body=body)
        return {"PartNumber": number, "ETag": reply["ETag"]}

    def _settle(self) -> None:
        if self.in_flight is not None:
            in_flight, self.in_flight = self.in_flight, None
            self.parts.append(in_flight.result())

    def _stop_sender(self) -> None:
        if self.sender is not None:
            self.sender.shutdown(wait=True)
            self.sender = None

    def finish(self) -> None:
        client, bucket = self.storage.client, self.storage.bucket
        if self.upload_id is None:
            client.put_object(Bucket=bucket, Key=self.key, Body=b"".join(self.chunks))
            return
        if self.filled:
            self._send_part()
        self._settle()
        self._stop_sender()
        client.complete_multipart_upload(Bucket=bucket, Key=self.key, UploadId=self.upload_id,
                                         MultipartUpload={"Parts": self.parts})

    def abort(self) -> None:
        if self.upload_id is None:
            return
        # The part in flight ends (sent or failed) before the upload is aborted, so that it
        # cannot land in an upload aborted under it.
        self._stop_sender()
        try:
            with reachable():
                self.storage._abort(self.key, self.upload_id)
        except StorageUnavailable as exc:  # the write failed for that reason already
            log.warning("left multipart upload of %r for the orphan sweep: %s", self.key, exc.cause)
