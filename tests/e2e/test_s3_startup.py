"""Wrong S3 settings stop the start with a message naming the bucket, the endpoint and the
cause, not the first upload: pserve, gunicorn and the Celery worker against moto's server
with its authentication on (``INITIAL_NO_AUTH_ACTION_COUNT``: the first few requests set
the bucket and the IAM users up, every later one must be signed by a known key)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest

from tests.conftest import free_port, running
from tests.e2e.stack import stack_ini
from tests.s3 import CREDENTIALS, REGION, moto_server, s3_settings

BIN = os.path.dirname(sys.executable)
BUCKET = "upload2-startup"
ADMIN = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
# The unsigned requests below that set the store up; moto checks every request after them.
SETUP_REQUESTS = 7


def aws(service: str, endpoint: str):
    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)


def access_key(iam, user: str) -> dict:
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"upload2.s3_access_key_id": key["AccessKeyId"], "upload2.s3_secret_access_key": key["SecretAccessKey"]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """moto with authentication: a bucket, a user who may do anything, one who may do nothing."""
    with moto_server(tmp_path_factory.mktemp("moto-auth"), INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_REQUESTS)) as endpoint:
        aws("s3", endpoint).create_bucket(Bucket=BUCKET)
        iam = aws("iam", endpoint)
        admin = access_key(iam, "upload2")
        policy = iam.create_policy(PolicyName="everything", PolicyDocument=ADMIN)["Policy"]["Arn"]
        iam.attach_user_policy(UserName="upload2", PolicyArn=policy)
        nobody = access_key(iam, "nobody")
        yield endpoint, admin, nobody


def ini_for(tmp_path, database_url, storage_dir, endpoint: str, bucket: str = BUCKET, broker_url: str = "",
            **credentials):
    settings = {**s3_settings(endpoint, bucket), **credentials}
    return stack_ini(tmp_path / "stack.ini", database_url, storage_dir, broker_url,
                     **{key.removeprefix("upload2."): value for key, value in settings.items()},
                     s3_connect_timeout=1, s3_max_attempts=1)


def refused_start(args: list, env: dict | None = None) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    return proc.stderr


def pserve(ini) -> tuple[list, str]:
    """The command that serves ``ini`` with waitress, and the URL it serves at."""
    port = free_port()
    with open(ini, "a") as fh:
        fh.write(f"\n[server:main]\nuse = egg:waitress#main\nlisten = 127.0.0.1:{port}\n")
    return [os.path.join(BIN, "pserve"), str(ini)], f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(("case", "cause"), [
    ("unknown key", "the store does not know the access key (upload2.s3_access_key_id) (InvalidAccessKeyId:"),
    ("wrong secret", "the secret key is wrong (upload2.s3_secret_access_key) (SignatureDoesNotMatch:"),
    ("no permission", "the credentials may not list the bucket (AccessDenied:"),
    ("missing bucket", "the bucket does not exist (NoSuchBucket:"),
    ("no store", "the endpoint cannot be reached: Could not connect to the endpoint URL"),
])
def test_pserve_refuses_to_start_and_says_why(tmp_path, database_url, storage_dir, store, case, cause):
    endpoint, admin, nobody = store
    bucket, credentials = BUCKET, admin
    if case == "unknown key":
        credentials = {**admin, "upload2.s3_access_key_id": "AKIAUNKNOWN0000000000"}
    elif case == "wrong secret":
        credentials = {**admin, "upload2.s3_secret_access_key": "not-the-secret"}
    elif case == "no permission":
        credentials = nobody
    elif case == "missing bucket":
        bucket = "upload2-no-such-bucket"
    elif case == "no store":
        endpoint = f"http://127.0.0.1:{free_port()}"
    args, _ = pserve(ini_for(tmp_path, database_url, storage_dir, endpoint, bucket, **credentials))
    stderr = refused_start(args)
    assert f"ConfigurationError: upload2.s3_bucket {bucket!r} at {endpoint}: {cause}" in stderr, stderr


def test_gunicorn_and_the_worker_refuse_wrong_credentials_and_start_with_the_right_ones(
        tmp_path, database_url, storage_dir, store, dbsession):
    endpoint, admin, _ = store
    message = f"upload2.s3_bucket {BUCKET!r} at {endpoint}: the secret key is wrong"
    wrong = ini_for(tmp_path, database_url, storage_dir, endpoint, broker_url="redis://127.0.0.1:1/0",
                    **{**admin, "upload2.s3_secret_access_key": "not-the-secret"})
    stderr = refused_start([os.path.join(BIN, "gunicorn"), "--paste", str(wrong), "--bind",
                            f"127.0.0.1:{free_port()}"])
    assert message in stderr, stderr
    stderr = refused_start([os.path.join(BIN, "celery"), "-A", "pypi_upload2.tasks", "worker"],
                           env={"UPLOAD2_CONFIG": str(wrong)})
    assert f"pypi-upload2: {wrong}: {message}" in stderr, stderr

    args, url = pserve(ini_for(tmp_path, database_url, storage_dir, endpoint, **admin))
    with running(args, url + "/simple/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        assert proc.poll() is None  # listening: the check passed
