"""Trusted Publishing and PEP 740 attestations with real clients against a real server
process: the local OIDC issuer (its JWKS on loopback) and a fake GitHub Actions token service
answering ``ACTIONS_ID_TOKEN_REQUEST_URL``; ``uv publish --trusted-publishing always``, ``twine
upload --attestations`` through the legacy URL, and ``pypi-upload2 upload``; the shared, real
Sigstore attestations verified; every refusal leaves nothing stored."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import ssl
import subprocess
import time

import httpx
import pytest
import sqlalchemy as sa

from pypi_upload2.builtin.models import ApiToken, ReleaseFile
from pypi_upload2.models import Attestation, FileUploadSession
from tests.conftest import build_sdist, build_wheel, count, free_port, stop_group
from tests.e2e.test_client_upload import (  # noqa: F401
    SIMPLE_JSON,
    client_env,
    make_server,
    run_client,
)
from tests.e2e.test_legacy_clients import BIN, run
from tests.functional.test_attestations import SHARED
from tests.oidc import actions_env, add_publisher, github_claims
from tests.tls import make_certificates

MODELS = "pypi_attestation_models-0.0.4a2.tar.gz"  # GitHub trailofbits/pypi-attestation-models, release.yml
MODELS_REPO = "trailofbits/pypi-attestation-models"
GITLAB = "gitlab_oidc_project-0.0.3.tar.gz"  # GitLab facutuesca/gitlab-oidc-project, .gitlab-ci.yml
GITLAB_REPO = "facutuesca/gitlab-oidc-project"


@pytest.fixture
def base(make_server, issuer, gitlab_issuer):  # noqa: F811
    # A value of several lines: the ini's continuation lines are indented.
    return make_server({"upload2.oidc_issuers": f"github {issuer.url}\n    gitlab {gitlab_issuer.url}"})


@pytest.fixture
def tls(tmp_path, database_url, storage_dir, issuer, dbsession):
    """The server in a gunicorn process over HTTPS (a test CA's certificate for 127.0.0.1):
    uv asks ``https://<publish host>/_/oidc/audience`` whatever the publish URL's scheme.
    Returns its URL and the CA file clients trust."""
    ca, cert, key = make_certificates(tmp_path)
    port = free_port()
    ini = tmp_path / "tls.ini"
    ini.write_text(f"[app:main]\nuse = egg:pypi-upload2\nsqlalchemy.url = {database_url}\n"
                   f"upload2.storage = {storage_dir}\nupload2.oidc_issuers = github {issuer.url}\n")
    proc = subprocess.Popen([os.path.join(BIN, "gunicorn"), "--paste", str(ini), "--bind", f"127.0.0.1:{port}",
                             "--certfile", str(cert), "--keyfile", str(key), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/simple/", verify=trusting(ca))
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the TLS server did not start"
                time.sleep(0.2)
        yield url, ca
    finally:
        stop_group(proc)


def trusting(ca) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@pytest.fixture
def dist(tmp_path):
    """The shared distributions, each with its attestation named as twine looks for it."""
    folder = tmp_path / "dist"
    folder.mkdir()
    for name, suffix in ((MODELS, ".attestation"), (GITLAB, ".publish.attestation")):
        shutil.copy(SHARED / name, folder / name)
        shutil.copy(SHARED / (name + suffix), folder / (name + ".publish.attestation"))
    return folder


def attestation(name: str) -> dict:
    return json.loads((SHARED / (name + (".attestation" if name == MODELS else ".publish.attestation"))).read_text())


def provenance(base: str, project: str, filename: str) -> dict:
    files = {f["filename"]: f for f in httpx.get(f"{base}/simple/{project}/", headers=SIMPLE_JSON).json()["files"]}
    response = httpx.get(files[filename]["provenance"])
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "application/vnd.pypi.integrity.v1+json")
    return response.json()


def mint(base: str, jwt_text: str) -> httpx.Response:
    return httpx.post(f"{base}/_/oidc/mint-token", json={"token": jwt_text})


def nothing_stored(dbsession) -> bool:
    return count(dbsession, ReleaseFile) == 0 and count(dbsession, Attestation) == 0 and not dbsession.scalar(
        sa.select(sa.func.count()).select_from(FileUploadSession).where(FileUploadSession.status != "canceled"))


def uv_publish(tls, path, *, cwd, env):
    base, ca = tls
    return run(os.path.join(BIN, "uv"), "publish", "--publish-url", f"{base}/legacy/", "--trusted-publishing",
               "always", str(path), cwd=cwd, env={**env, "SSL_CERT_FILE": str(ca)})


def twine_attested(base, token, *paths, cwd):
    return run(os.path.join(BIN, "twine"), "upload", "--attestations", "--repository-url", f"{base}/legacy/",
               "-u", "__token__", "-p", token, "--non-interactive", "--disable-progress-bar", *map(str, paths),
               cwd=cwd)


# -- uv publish --trusted-publishing always ----------------------------------------------

def test_uv_publishes_with_trusted_publishing(tls, issuer, dbsession, tmp_path, dist_dir):
    add_publisher(dbsession, "tp-demo", repository="octo/tp-demo", pending=True)
    issuer.actions_claims = github_claims("octo/tp-demo", "release.yml")
    wheel = build_wheel(dist_dir, "tp-demo", "1.0")
    done = uv_publish(tls, wheel, cwd=tmp_path, env=actions_env(issuer))
    assert done.returncode == 0, done.stdout + done.stderr
    page = httpx.get(f"{tls[0]}/simple/tp-demo/", headers=SIMPLE_JSON, verify=trusting(tls[1]))
    assert [f["filename"] for f in page.json()["files"]] == [wheel.name]
    token = dbsession.scalar(sa.select(ApiToken).where(ApiToken.publisher_id.is_not(None)))
    assert token.project_name == "tp-demo" and token.expires_at is not None
    dbsession.commit()


def test_uv_with_an_expired_token_or_for_another_project_stores_nothing(tls, issuer, dbsession, tmp_path,
                                                                       dist_dir):
    add_publisher(dbsession, "tp-demo", repository="octo/tp-demo")
    issuer.actions_claims = {**github_claims("octo/tp-demo", "release.yml"), "lifetime": -120}
    expired = uv_publish(tls, build_wheel(dist_dir, "tp-demo", "1.0"), cwd=tmp_path, env=actions_env(issuer))
    assert expired.returncode != 0
    assert "expired" in expired.stdout + expired.stderr
    # A valid token of tp-demo's workflow is no token of another project.
    issuer.actions_claims = github_claims("octo/tp-demo", "release.yml")
    other = uv_publish(tls, build_wheel(dist_dir, "other-project", "1.0"), cwd=tmp_path, env=actions_env(issuer))
    assert other.returncode != 0
    assert "403" in other.stdout + other.stderr
    assert nothing_stored(dbsession)


# -- twine upload --attestations, the token minted as a CI step would ---------------------

def test_twine_uploads_real_attestations_through_the_legacy_url(base, issuer, dbsession, dist, tmp_path):
    add_publisher(dbsession, "pypi-attestation-models", repository=MODELS_REPO, workflow="release.yml",
                  pending=True)
    token = mint(base, issuer.github(MODELS_REPO, "release.yml")).json()["token"]
    done = twine_attested(base, token, dist / MODELS, dist / (MODELS + ".publish.attestation"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert provenance(base, "pypi-attestation-models", MODELS) == {"version": 1, "attestation_bundles": [{
        "publisher": {"kind": "GitHub", "repository": MODELS_REPO, "workflow": "release.yml", "environment": None},
        "attestations": [attestation(MODELS)]}]}


def test_twine_refusals_store_nothing(base, issuer, dbsession, dist, tmp_path):
    add_publisher(dbsession, "pypi-attestation-models", repository=MODELS_REPO, workflow="release.yml")
    token = mint(base, issuer.github(MODELS_REPO, "release.yml")).json()["token"]
    # Tampered bytes: the same filename, other content, the real attestation beside it.
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    other = build_sdist(tampered, "pypi_attestation_models", "0.0.4a2")
    shutil.copy(dist / (MODELS + ".publish.attestation"), tampered / (MODELS + ".publish.attestation"))
    done = twine_attested(base, token, other, tampered / (MODELS + ".publish.attestation"), cwd=tmp_path)
    assert done.returncode != 0 and "does not verify" in done.stdout + done.stderr
    # A wrong publisher: the token of another workflow of the same repository.
    add_publisher(dbsession, "pypi-attestation-models", repository=MODELS_REPO, workflow="nightly.yml")
    wrong = mint(base, issuer.github(MODELS_REPO, "nightly.yml")).json()["token"]
    done = twine_attested(base, wrong, dist / MODELS, dist / (MODELS + ".publish.attestation"), cwd=tmp_path)
    assert done.returncode != 0 and "nightly.yml" in done.stdout + done.stderr
    assert nothing_stored(dbsession)


# -- pypi-upload2 upload --attestations --trusted-publishing -------------------------------

def test_the_client_stages_with_attestations_from_github_actions(base, issuer, dbsession, dist, tmp_path):
    add_publisher(dbsession, "pypi-attestation-models", repository=MODELS_REPO, workflow="release.yml",
                  pending=True)
    issuer.actions_claims = github_claims(MODELS_REPO, "release.yml")
    env = client_env(tmp_path, **actions_env(issuer))
    done = run_client(["upload", "--stage", "--attestations", "--trusted-publishing", "always", "--json",
                       "--repository-url", f"{base}/2.0/", str(dist / MODELS),
                       str(dist / (MODELS + ".publish.attestation"))], env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    stage = report["sessions"][0]["stage"]
    files = {f["filename"]: f for f in httpx.get(f"{stage}pypi-attestation-models/", headers=SIMPLE_JSON)
             .json()["files"]}
    staged = httpx.get(files[MODELS]["provenance"]).json()
    assert staged["attestation_bundles"][0]["attestations"] == [attestation(MODELS)]


def test_the_client_from_gitlab_ci_through_the_legacy_api(base, gitlab_issuer, dbsession, dist, tmp_path):
    add_publisher(dbsession, "gitlab-oidc-project", kind="gitlab", repository=GITLAB_REPO,
                  workflow=".gitlab-ci.yml", pending=True)
    jwt_text = gitlab_issuer.gitlab(GITLAB_REPO, ".gitlab-ci.yml")
    env = client_env(tmp_path, GITLAB_CI="true", PYPI_UPLOAD2_ID_TOKEN=jwt_text)
    args = ["upload", "--attestations", "--protocol", "legacy", "--repository-url", f"{base}/legacy/",
            str(dist / GITLAB)]
    done = run_client(args, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert provenance(base, "gitlab-oidc-project", GITLAB)["attestation_bundles"][0]["publisher"] == {
        "kind": "GitLab", "repository": GITLAB_REPO, "workflow_filepath": ".gitlab-ci.yml", "environment": None}
    # The same OIDC token a second time: a replay, refused before anything is sent.
    replayed = run_client(args, env)
    assert replayed.returncode == 2 and "invalid-reuse-token" in replayed.stdout + replayed.stderr
    assert count(dbsession, ApiToken) == 1


def test_the_client_refuses_a_second_attestation_of_one_type(base, issuer, dbsession, dist, tmp_path):
    add_publisher(dbsession, "pypi-attestation-models", repository=MODELS_REPO, workflow="release.yml")
    shutil.copy(dist / (MODELS + ".publish.attestation"), dist / (MODELS + ".copy.attestation"))
    issuer.actions_claims = github_claims(MODELS_REPO, "release.yml")
    env = client_env(tmp_path, **actions_env(issuer))
    done = run_client(["upload", "--attestations", "--repository-url", f"{base}/2.0/", str(dist / MODELS)], env)
    assert done.returncode == 1 and "both of the predicate type" in done.stdout + done.stderr
    assert nothing_stored(dbsession)


def test_one_token_exchanged_at_once_in_several_requests_mints_once(base, issuer, dbsession):
    add_publisher(dbsession, "tp-demo", repository="octo/tp-demo")
    jwt_text = issuer.github("octo/tp-demo", "release.yml")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: mint(base, jwt_text), range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [422] * 7
    assert {a.json()["errors"][0]["code"] for a in answers if a.status_code == 422} == {"invalid-reuse-token"}
    assert count(dbsession, ApiToken) == 1
