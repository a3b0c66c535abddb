"""Two web hosts and a Celery worker that share nothing but PostgreSQL, Redis and an S3 bucket
(moto's server with S3's 5 MiB parts): each gunicorn host has an empty temp dir of its own
and no storage folder, and any request of an upload may land on either. Real pip and twine
install and upload through them; every byte downloaded is checked against the built files."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest
import sqlalchemy as sa

from pypi_upload2.builtin.models import ReleaseFile
from pypi_upload2.models import FileUploadSession
from pypi_upload2.states import FileStatus, PublishingStatus
from tests.conftest import build_wheel, gunicorn
from tests.e2e.stack import stack_ini
from tests.e2e.test_legacy_clients import twine
from tests.e2e.test_pip import Venv
from tests.e2e.test_worker import (  # noqa: F401  (fixture)
    PARTIAL,
    Worker,
    append,
    call,
    redis_url,
    settled,
    start_resumable,
)
from tests.s3 import keys, multipart_uploads, s3_settings

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part but the last: the draft's min-append-size
APPEND = 6 * MiB
JSON_SIMPLE = {"Accept": "application/vnd.pypi.simple.v1+json"}


class Host:
    """A machine of its own: an ini, a temp dir (``TMPDIR`` and the spool) and a storage
    folder that must never appear."""

    def __init__(self, root, name, database_url, broker_url, s3_endpoint, s3_bucket):
        self.dir = root / name
        self.tmp, self.spool, self.storage = self.dir / "tmp", self.dir / "spool", self.dir / "files"
        self.tmp.mkdir(parents=True)
        self.spool.mkdir()
        s3 = {key.removeprefix("upload2."): value for key, value in s3_settings(s3_endpoint, s3_bucket).items()}
        self.ini = stack_ini(self.dir / "host.ini", database_url, self.storage, broker_url, **s3,
                             s3_spool_dir=self.spool, publish_mode="deferred", max_file_size=64 * MiB,
                             sweep_interval=1)  # beat sweeps the bucket every second meanwhile
        self.env = {"TMPDIR": str(self.tmp)}

    def left_behind(self) -> list:
        """What this host kept locally: no file in its temp dirs (a Celery pool keeps an empty
        folder there while it runs), no storage folder at all."""
        return [*(p for folder in (self.tmp, self.spool) for p in folder.rglob("*") if not p.is_dir()),
                *([self.storage] if self.storage.exists() else [])]


def on(base: str, url: str) -> str:
    """``url`` (a link one host built from its own Host header) sent to the host at ``base``."""
    path = url.split("/", 3)[3]
    return f"{base}/{path}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def downloaded(client, index_url: str, name: str) -> dict:
    """Every file an index page lists, fetched through its link: filename -> sha256 of the bytes."""
    listing = client.get(f"{index_url}{name}/", headers=JSON_SIMPLE)
    assert listing.status_code == 200, listing.text
    found = {}
    for entry in listing.json()["files"]:
        digest = hashlib.sha256()
        with client.stream("GET", entry["url"]) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                digest.update(chunk)
        assert digest.hexdigest() == entry["hashes"]["sha256"]
        found[entry["filename"]] = digest.hexdigest()
    return found


def pip_installs(venv: Venv, folder, index_url: str, requirement: str, module: str, hashes: list[str]) -> str:
    """Install ``requirement`` with pip checking the file it downloads against ``hashes``;
    return the module's VALUE."""
    requirements = folder / "requirements.txt"
    requirements.write_text(requirement + "".join(f" --hash=sha256:{h}" for h in hashes) + "\n")
    venv.pip("install", "--no-cache-dir", "--no-deps", "--require-hashes", "--index-url", index_url,
             "-r", str(requirements))
    value = venv.run(f"import {module}; print({module}.VALUE)")
    assert value.returncode == 0, value.stderr
    venv.uninstall(requirement.split("==")[0])
    return value.stdout.strip()


def known_keys(dbsession) -> list[str]:
    """The stored keys the database names: published files and the files of open sessions,
    each with its metadata (which a file has once completed)."""
    published = dbsession.scalars(sa.select(ReleaseFile)).all()
    live = dbsession.scalars(sa.select(FileUploadSession).where(
        FileUploadSession.status.in_((FileStatus.PENDING, FileStatus.PROCESSING, FileStatus.COMPLETED)))).all()
    names = {f.blob_key for f in published} | {
        f.blob_key for f in live if f.publishing_session.status == PublishingStatus.OPEN}
    dbsession.rollback()
    return sorted(names | {key + ".metadata" for key in names})


@pytest.fixture
def machines(tmp_path, database_url, redis_url, s3_endpoint, s3_bucket, dbsession):  # noqa: F811
    # After dbsession: the processes stop before its teardown empties the tables.
    return {name: Host(tmp_path, name, database_url, redis_url, s3_endpoint, s3_bucket)
            for name in ("a", "b", "worker")}


@pytest.fixture
def worker(machines):
    machine = machines["worker"]
    w = Worker(machine.ini, machine.dir, env=machine.env)
    w.start()
    yield w
    w.kill()


@pytest.fixture
def venv(tmp_path):
    return Venv(tmp_path / "venv")


def test_two_hosts_and_a_worker_share_only_the_database_the_broker_and_the_bucket(
        machines, worker, venv, make_user, dbsession, s3_api, s3_bucket, tmp_path):
    token = make_user("alice")
    built = tmp_path / "built"
    built.mkdir()
    # Both over 10 MiB: the resumable one takes three appends, the posted one two parts.
    resumable_wheel = build_wheel(built, "foo", "1.0", module_source="VALUE = 'resumable'\n", padding=12 * MiB)
    posted_wheel = build_wheel(built, "foo", "1.0", tag="py2.py3-none-any", module_source="VALUE = 'posted'\n",
                               padding=12 * MiB)
    legacy_wheel = build_wheel(built, "legacy-demo", "1.0", module_source="VALUE = 'from twine'\n", padding=11 * MiB)
    digests = {path.name: sha256(path.read_bytes()) for path in (resumable_wheel, posted_wheel, legacy_wheel)}
    a_host, b_host = machines["a"], machines["b"]
    options = ("--workers", "2", "--worker-class", "gthread", "--threads", "4", "--timeout", "120")
    with gunicorn(a_host.ini, *options, env=a_host.env) as a, gunicorn(b_host.ini, *options, env=b_host.env) as b, \
            httpx.Client(auth=("__token__", token), timeout=120) as client:
        session = call(client, a + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
        assert session["links"]["session"].startswith(a)

        # The resumable upload: created on A, its appends on A, B, A; a non-final append below
        # the store's part size is refused on B as on A.
        data = resumable_wheel.read_bytes()
        upload = start_resumable(client, session, resumable_wheel)
        file_url = upload["mechanism"]["file_url"]
        assert f"min-append-size={PART}" in client.head(on(b, file_url)).headers["Upload-Limit"]
        small = client.patch(on(b, file_url), content=data[:MiB], headers={
            "Content-Type": PARTIAL, "Upload-Offset": "0", "Upload-Complete": "?0"})
        assert small.status_code == 400 and small.json()["title"] == "Append too small"
        for base, offset in zip((a, b, a), range(0, len(data), APPEND)):
            part = data[offset:offset + APPEND]
            upload_on = {**upload, "mechanism": {**upload["mechanism"], "file_url": on(base, file_url)}}
            response = append(client, upload_on, part, offset, offset + len(part) == len(data))
            assert response.status_code == 204, response.text
        assert client.head(on(b, file_url)).headers["Upload-Offset"] == str(len(data))
        # Completed on B: the worker assembles the parts and verifies the file.
        completed = call(client, on(b, upload["links"]["complete"]), expected=202)
        assert completed.json()["status"] == "processing"
        status = settled(client, on(a, upload["links"]["file-upload-session"]))
        assert status["status"] == "completed", status

        # http-post-bytes: the bytes POSTed to A, the upload completed on B.
        posted = posted_wheel.read_bytes()
        file_session = call(client, session["links"]["upload"], {
            "filename": posted_wheel.name, "size": len(posted), "hashes": {"sha256": sha256(posted)},
            "mechanism": "http-post-bytes"}, 202).json()
        sent = client.post(on(a, file_session["mechanism"]["file_url"]), content=posted,
                           headers={"Content-Type": "application/octet-stream"})
        assert sent.status_code == 204, sent.text
        assert call(client, on(b, file_session["links"]["complete"]), expected=201).json()["status"] == "completed"

        # pip installs from the stage through B, checking the hashes of what it downloads.
        stage = on(b, session["links"]["stage"])
        assert downloaded(client, stage, "foo") == {name: digests[name] for name in (resumable_wheel.name,
                                                                                    posted_wheel.name)}
        assert pip_installs(venv, tmp_path, stage, "foo==1.0", "foo",
                            [digests[resumable_wheel.name], digests[posted_wheel.name]]) in ("resumable", "posted")

        # Publish on A: the worker publishes; B reports it.
        published = call(client, on(a, session["links"]["publish"]), expected=202)
        assert published.json()["status"] == "processing"
        assert settled(client, on(b, session["links"]["session"]))["status"] == "published"
        assert downloaded(client, a + "/simple/", "foo") == downloaded(client, b + "/simple/", "foo") == {
            name: digests[name] for name in (resumable_wheel.name, posted_wheel.name)}
        assert pip_installs(venv, tmp_path, a + "/simple/", "foo==1.0", "foo",
                            [digests[resumable_wheel.name], digests[posted_wheel.name]]) in ("resumable", "posted")

        # twine to the legacy API of B; pip installs it from A.
        done = twine(b, token, legacy_wheel, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert downloaded(client, a + "/simple/", "legacy-demo") == {legacy_wheel.name: digests[legacy_wheel.name]}
        assert pip_installs(venv, tmp_path, a + "/simple/", "legacy-demo==1.0", "legacy_demo",
                            [digests[legacy_wheel.name]]) == "from twine"

        # Another session, canceled with a completed file and a resumable upload halfway (a
        # multipart upload in progress): nothing of it stays in the bucket.
        other = call(client, b + "/2.0/", {"name": "bar", "version": "1.0"}, 201).json()
        bar = build_wheel(built, "bar", "1.0", padding=12 * MiB)
        bar_data = bar.read_bytes()
        halfway = start_resumable(client, other, bar)
        assert append(client, halfway, bar_data[:APPEND], 0, False).status_code == 204
        bar_posted = build_wheel(built, "bar", "1.0", tag="py2.py3-none-any")
        bar_file = call(client, other["links"]["upload"], {
            "filename": bar_posted.name, "size": bar_posted.stat().st_size,
            "hashes": {"sha256": sha256(bar_posted.read_bytes())}, "mechanism": "http-post-bytes"}, 202).json()
        assert client.post(on(a, bar_file["mechanism"]["file_url"]), content=bar_posted.read_bytes(), headers={
            "Content-Type": "application/octet-stream"}).status_code == 204
        assert call(client, on(b, bar_file["links"]["complete"]), expected=201).json()["status"] == "completed"
        # The bucket holds only what the database names, the half-done upload's parts included.
        known = known_keys(dbsession)
        assert set(keys(s3_api, s3_bucket)) <= set(known)
        [halfway_row] = dbsession.scalars(sa.select(FileUploadSession).filter_by(filename=bar.name)).all()
        assert multipart_uploads(s3_api, s3_bucket) == [halfway_row.blob_key]
        dbsession.rollback()
        canceled = client.delete(on(a, other["links"]["session"]))
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"

    # The worker did the verification and the publish: the hosts only sent them.
    log = worker.log.read_text()
    assert f"verifying {resumable_wheel.name}" in log
    for task in ("verify_file", "publish_session"):
        assert re.search(rf"Task pypi_upload2\.{task}\[[-0-9a-f]+\] succeeded in ", log), log[-3000:]
    assert "ERROR" not in log, log[-3000:]
    # After the cancel: only the published files (and their metadata) are left, no parts.
    assert keys(s3_api, s3_bucket) == known_keys(dbsession)
    published = dbsession.execute(sa.select(ReleaseFile.blob_key, ReleaseFile.sha256)).all()
    dbsession.rollback()
    assert sorted(key for key in known_keys(dbsession) if not key.endswith(".metadata")) == sorted(
        key for key, _ in published)
    assert sorted(digest for _, digest in published) == sorted(digests.values())
    assert multipart_uploads(s3_api, s3_bucket) == []
    for machine in machines.values():
        assert machine.left_behind() == [], machine.dir
