"""A real S3 API for the object-storage tests: moto's server as its own process on a free
loopback port, a fresh bucket per test, and the settings that point the app at it.

``UPLOAD2_TEST_STORAGE=s3`` runs the functional tests' app on it instead of the local disk."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys

import boto3
import pytest

STORAGE = os.environ.get("UPLOAD2_TEST_STORAGE", "local")
CREDENTIALS = {"aws_access_key_id": "upload2-test", "aws_secret_access_key": "upload2-test-secret"}
REGION = "us-east-1"


@contextlib.contextmanager
def moto_server(directory, **env):
    """moto's server on a free loopback port, its log in ``directory`` and ``env`` over this
    process's environment; yields its URL (benchmarks/s3.py starts it too)."""
    from .conftest import free_port, running

    url = f"http://127.0.0.1:{free_port()}"
    with open(directory / "moto.log", "wb") as out, running(
            [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
             "-p", url.rsplit(":", 1)[1]], url + "/moto-api/", stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **env}):
        yield url


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """moto with S3's own rules: every part but the last at least 5 MiB."""
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(scope="session")
def s3_any_part_endpoint(tmp_path_factory):
    """moto taking parts of any size, for the suite's small resumable appends."""
    with moto_server(tmp_path_factory.mktemp("moto-any-part"), S3_UPLOAD_PART_MIN_SIZE="1") as url:
        yield url


def s3_client(endpoint: str):
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)


@pytest.fixture
def s3_api(s3_endpoint):
    return s3_client(s3_endpoint)


def new_bucket(client) -> str:
    name = f"upload2-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_bucket(s3_api):
    return new_bucket(s3_api)


def s3_settings(endpoint: str, bucket: str, **extra) -> dict:
    return {"upload2.storage_backend": "s3", "upload2.s3_bucket": bucket, "upload2.s3_endpoint_url": endpoint,
            "upload2.s3_region": REGION, "upload2.s3_access_key_id": CREDENTIALS["aws_access_key_id"],
            "upload2.s3_secret_access_key": CREDENTIALS["aws_secret_access_key"],
            "upload2.s3_addressing_style": "path", **extra}


def keys(client, bucket: str) -> list[str]:
    """Every object key in ``bucket``."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))


def multipart_uploads(client, bucket: str) -> list[str]:
    """The keys of every multipart upload in progress in ``bucket``."""
    return sorted(u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", ()))
