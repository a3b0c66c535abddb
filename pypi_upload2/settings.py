"""The plugin's settings, parsed once from the ``upload2.*`` keys of the host's settings."""

from __future__ import annotations

import dataclasses
import os

from pyramid.settings import asbool, aslist

MiB = 1024 * 1024
PUBLISH_MODES = ("sync", "deferred")
S3_TEXT = ("s3_bucket", "s3_endpoint_url", "s3_region", "s3_access_key_id", "s3_secret_access_key",
           "s3_prefix", "s3_addressing_style", "s3_spool_dir")


@dataclasses.dataclass(frozen=True)
class Settings:
    storage: str
    root_path: str = "/2.0/"
    session_lifetime: int = 7 * 24 * 3600
    file_session_lifetime: int = 24 * 3600
    max_session_lifetime: int = 30 * 24 * 3600
    max_file_size: int = 100 * MiB
    max_metadata_size: int = 1 * MiB
    # What inspecting one archive may cost (services/distributions.py).
    max_archive_members: int = 100_000
    max_inflated_size: int = 1024 * MiB
    status_retention: int = 7 * 24 * 3600
    simple_index: bool = True
    realm: str = "pypi-upload2"
    # New files may join a release only this long after its first publication (0: forever).
    new_files_window: int = 14 * 24 * 3600
    # Where the legacy (1.0) upload API answers; empty: not at all.
    legacy_path: str = "/legacy/"
    # Publish in the request ("sync", 201) or in a task ("deferred", 202 then processing).
    publish_mode: str = "sync"
    # Dotted names of the publish checks (services/checks.py), run in order on every publish;
    # None: the plugin's own, then the index's.
    publish_checks: tuple[str, ...] | None = None
    # Total bytes of one project's files (the built-in quota check).
    project_quota: int = 10 * 1024 * MiB
    # A file or publish still processing after this long is handed to a worker again.
    processing_deadline: int = 300
    # How often beat runs the periodic tasks (expiry, retention, stuck processing, orphan parts).
    sweep_interval: int = 60
    # The most bytes one append of the resumable mechanism may carry.
    max_append_size: int = 64 * MiB
    # The most bytes of a 2.0 JSON request body (views/requests.py); they are a few hundred.
    max_json_body: int = 64 * 1024
    # The most bytes of a file's PEP 740 attestations, as posted (a Sigstore bundle is ~10 KiB).
    max_attestations_size: int = 256 * 1024
    # Seconds a request body may stall (no byte arriving) under gunicorn before the read
    # fails; 0: wait for ever (views/stalls.py).
    body_timeout: int = 60
    # ``celery.broker_url``: where tasks are sent; empty runs them in the web process
    # right after the request commits (eager), the embedded default.
    broker_url: str = ""
    # Scheduled publish (``vnd-upload2-publish-after``) needs beat to run the periodic tasks:
    # on by default only with a broker.
    scheduled_publish: bool = False
    # Downloads from /files/ and the stage redirect to the storage's own URL when it has one
    # (presigned S3 URLs); else the app streams the bytes.
    storage_redirect: bool = False
    # The S3 backend (storage/s3.py); credentials unset: boto3's own chain (env, profile, role).
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_prefix: str = ""
    # "path" for stores without per-bucket host names (MinIO, moto); "auto" lets boto3 choose.
    s3_addressing_style: str = ""
    # The store's smallest part but the last (S3's 5 MiB), advertised as min-append-size.
    s3_min_part_size: int = 5 * MiB
    # Bytes a writer buffers in memory before sending them as one part of a multipart upload.
    s3_part_size: int = 8 * MiB
    # How long a presigned download URL stays valid, in seconds.
    s3_url_expiry: int = 300
    # Where an append is spooled before it becomes a part (empty: the system's temp folder).
    s3_spool_dir: str = ""
    # Seconds to wait for a connection to the store, and for each read of its answer; attempts
    # at each request (botocore's standard retries). Past them the request fails with 503.
    s3_connect_timeout: int = 10
    s3_read_timeout: int = 60
    s3_max_attempts: int = 3
    # A multipart upload no file upload session owns is aborted once it is this old.
    orphan_upload_age: int = 3600


def _path(value: str, here: str | None) -> str:
    # Relative paths in an ini file resolve against the ini's own folder.
    value = os.path.expanduser(value)
    if here and not os.path.isabs(value):
        value = os.path.join(here, value)
    return os.path.abspath(value)


def _legacy_path(value: str) -> str:
    value = value.strip()
    return value if not value or value.startswith("/") else "/" + value


def _choice(settings: dict, key: str, choices: tuple[str, ...]) -> str:
    value = settings.get(key, choices[0]).strip()
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}, not {value!r}")
    return value


def parse(settings: dict) -> Settings:
    here = settings.get("upload2.here")
    root = settings.get("upload2.root_path", "/2.0/")
    if not root.startswith("/"):
        root = "/" + root
    if not root.endswith("/"):
        root += "/"
    defaults = Settings(storage="")
    ints = {
        field.name: int(settings.get(f"upload2.{field.name}", getattr(defaults, field.name)))
        for field in dataclasses.fields(Settings)
        if field.type == "int"
    }
    return Settings(
        storage=_path(settings.get("upload2.storage", "var/files"), here),
        root_path=root,
        simple_index=asbool(settings.get("upload2.simple_index", True)),
        realm=settings.get("upload2.realm", defaults.realm),
        legacy_path=_legacy_path(settings.get("upload2.legacy_path", defaults.legacy_path)),
        publish_mode=_choice(settings, "upload2.publish_mode", PUBLISH_MODES),
        publish_checks=tuple(aslist(settings["upload2.publish_checks"])) if "upload2.publish_checks" in settings else None,
        broker_url=settings.get("celery.broker_url", "").strip(),
        scheduled_publish=asbool(settings.get("upload2.scheduled_publish",
                                              bool(settings.get("celery.broker_url", "").strip()))),
        storage_redirect=asbool(settings.get("upload2.storage_redirect", False)),
        **{name: settings.get(f"upload2.{name}", "").strip() for name in S3_TEXT},
        **ints,
    )
