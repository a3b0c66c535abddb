"""PEP 740 attestations through ``attestations_url`` and the legacy ``attestations`` field:
real Sigstore-signed attestations (../shared/attestations) verified offline at completion
against the trusted publisher that minted the uploading token."""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
from types import SimpleNamespace

import pytest

from pypi_upload2.builtin.models import ReleaseFile
from pypi_upload2.models import Attestation, FileUploadSession
from pypi_upload2.services import attestations
from pypi_upload2.states import FileStatus
from tests.conftest import (
    Uploader,
    assert_problem,
    basic,
    build_sdist,
    build_wheel,
    count,
    fetch,
)
from tests.functional.test_legacy import encode, twine_fields
from tests.oidc import add_publisher, mint

SHARED = pathlib.Path("/work/shared/attestations")
# pypi_attestations-0.0.19.tar.gz is refused before its attestation is looked at: its PKG-INFO
# declares Metadata-Version 2.1 yet has License-File (2.4), as PyPI's own check refuses too.
SDIST = "pypi_attestation_models-0.0.4a2.tar.gz"
PROJECT, VERSION = "pypi-attestation-models", "0.0.4a2"
REPO, WORKFLOW = "trailofbits/pypi-attestation-models", "release.yml"
PUBLISHER = {"kind": "GitHub", "repository": REPO, "workflow": WORKFLOW, "environment": None}


def attestation(name: str = SDIST, suffix: str = ".attestation") -> dict:
    return json.loads((SHARED / (name + suffix)).read_text())


@pytest.fixture
def app(make_app, issuer):
    return make_app(**{"upload2.oidc_issuers": f"github {issuer.url}"})


@pytest.fixture
def sdist(tmp_path) -> pathlib.Path:
    path = tmp_path / SDIST
    shutil.copy(SHARED / SDIST, path)
    return path


def trusted(app, issuer, dbsession, *, workflow=WORKFLOW) -> Uploader:
    """An uploader with a token minted for a publisher of the project (``workflow``)."""
    add_publisher(dbsession, PROJECT, repository=REPO, workflow=workflow)
    return Uploader(app, mint(app, issuer.github(REPO, workflow)).json["token"])


def staged_file(ci: Uploader, path: pathlib.Path):
    session = ci.create_session(PROJECT, VERSION).json
    return session, ci.start_file(session, path).json


def post_attestations(ci: Uploader, file_session: dict, body, status=204, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ci.app.post(file_session["mechanism"]["attestations_url"], data, status=status,
                       headers={**ci.headers, "Content-Type": content_type})


def test_both_mechanisms_advertise_attestations_url(app, issuer, dbsession, sdist):
    ci = trusted(app, issuer, dbsession)
    session, file_session = staged_file(ci, sdist)
    url = file_session["links"]["file-upload-session"]
    assert file_session["mechanism"]["attestations_url"] == url + "attestations"
    ci.delete(url)
    resumable = ci.start_file(session, sdist, mechanism="vnd-upload2-resumable-v1").json
    assert resumable["mechanism"]["attestations_url"] == resumable["links"]["file-upload-session"] + "attestations"


def test_a_real_attestation_verifies_and_is_kept(app, issuer, dbsession, sdist):
    ci = trusted(app, issuer, dbsession)
    session, file_session = staged_file(ci, sdist)
    post_attestations(ci, file_session, [attestation()])
    ci.send_bytes(file_session, sdist.read_bytes())
    done = ci.post(file_session["links"]["complete"], status=201).json
    assert done["status"] == "completed"
    row = fetch(dbsession, Attestation)
    assert row.publisher == PUBLISHER and row.body == attestation()
    ci.publish(session)
    assert fetch(dbsession, ReleaseFile, filename=SDIST).provenance == {
        "version": 1, "attestation_bundles": [{"publisher": PUBLISHER, "attestations": [attestation()]}]}


def test_resumable_uploads_take_attestations_too(app, issuer, dbsession, sdist):
    ci = trusted(app, issuer, dbsession)
    session = ci.create_session(PROJECT, VERSION).json
    file_session = ci.start_file(session, sdist, mechanism="vnd-upload2-resumable-v1").json
    post_attestations(ci, file_session, [attestation()])
    data = sdist.read_bytes()
    ci.app.patch(file_session["mechanism"]["file_url"], data, status=204,
                 headers={**ci.headers, "Content-Type": "application/partial-upload", "Upload-Offset": "0",
                          "Upload-Complete": "?1"})
    ci.post(file_session["links"]["complete"], status="2*")
    assert fetch(dbsession, FileUploadSession).status == FileStatus.COMPLETED
    assert count(dbsession, Attestation) == 1


def completes_in_error(ci: Uploader, file_session: dict, data: bytes) -> str:
    ci.send_bytes(file_session, data)
    problem = assert_problem(ci.post(file_session["links"]["complete"], status=400), 400)
    assert ci.get(file_session["links"]["file-upload-session"]).json["status"] == "error"
    return problem["detail"]


def test_tampered_bytes_fail_the_file(app, issuer, dbsession, tmp_path):
    ci = trusted(app, issuer, dbsession)
    other = build_sdist(tmp_path, "pypi_attestation_models", VERSION)  # the same name, other bytes
    assert other.name == SDIST and hashlib.sha256(other.read_bytes()).hexdigest() != hashlib.sha256(
        (SHARED / SDIST).read_bytes()).hexdigest()
    _, file_session = staged_file(ci, other)
    post_attestations(ci, file_session, [attestation()])
    detail = completes_in_error(ci, file_session, other.read_bytes())
    assert detail.startswith(f"Attestation 1 does not verify for {SDIST}") and "subject does not match" in detail
    assert count(dbsession, Attestation) == 0


def test_another_publishers_token_fails_the_file(app, issuer, dbsession, sdist):
    ci = trusted(app, issuer, dbsession, workflow="other.yml")
    _, file_session = staged_file(ci, sdist)
    post_attestations(ci, file_session, [attestation()])
    detail = completes_in_error(ci, file_session, sdist.read_bytes())
    assert f"from the GitHub publisher {REPO}, other.yml" in detail
    assert count(dbsession, Attestation) == 0


def test_two_attestations_of_one_type_fail_the_file(app, issuer, dbsession, sdist):
    ci = trusted(app, issuer, dbsession)
    _, file_session = staged_file(ci, sdist)
    post_attestations(ci, file_session, [attestation(), attestation()])
    detail = completes_in_error(ci, file_session, sdist.read_bytes())
    assert detail.startswith("Attestations 1 and 2 are both of the predicate type "
                             "https://docs.pypi.org/attestations/publish/v1")


def test_a_token_no_publisher_minted_may_not_attest(app, make_user, dbsession, sdist):
    ci = Uploader(app, make_user("alice"))
    _, file_session = staged_file(ci, sdist)
    problem = assert_problem(post_attestations(ci, file_session, [attestation()], status=400), 400, "attestations")
    assert problem["title"] == "Attestations need Trusted Publishing"
    assert count(dbsession, Attestation) == 0


@pytest.mark.parametrize("body, status, title", [
    ([], 400, "Invalid attestations"),
    ({"version": 1}, 400, "Invalid attestations"),
    ([{"version": 1}], 400, "Invalid attestation"),
    (b"[", 400, "Malformed JSON"),
    ([{}, {}, {}], 400, "Too many attestations"),
    (b" " * 300_000, 413, "Request too large"),
])
def test_malformed_attestations_are_refused(app, issuer, dbsession, sdist, body, status, title):
    ci = trusted(app, issuer, dbsession)
    _, file_session = staged_file(ci, sdist)
    assert assert_problem(post_attestations(ci, file_session, body, status=status), status)["title"] == title
    assert count(dbsession, Attestation) == 0


def test_attestations_are_json(app, issuer, dbsession, sdist):
    ci = trusted(app, issuer, dbsession)
    _, file_session = staged_file(ci, sdist)
    post_attestations(ci, file_session, [attestation()], status=415, content_type="text/plain")


def test_posting_again_replaces_and_deleting_the_file_deletes_them(app, issuer, dbsession, sdist):
    ci = trusted(app, issuer, dbsession)
    _, file_session = staged_file(ci, sdist)
    post_attestations(ci, file_session, [attestation()])
    post_attestations(ci, file_session, [attestation()])
    assert count(dbsession, Attestation) == 1
    ci.send_bytes(file_session, sdist.read_bytes())
    ci.post(file_session["links"]["complete"], status=201)
    # Once completed, too late: they were verified with the file.
    post_attestations(ci, file_session, [attestation()], status=409)
    ci.delete(file_session["links"]["file-upload-session"])
    assert count(dbsession, Attestation) == 0


def test_replacing_a_completed_file_deletes_its_attestations(app, issuer, dbsession, sdist):
    ci = trusted(app, issuer, dbsession)
    session, file_session = staged_file(ci, sdist)
    post_attestations(ci, file_session, [attestation()])
    ci.send_bytes(file_session, sdist.read_bytes())
    ci.post(file_session["links"]["complete"], status=201)
    ci.start_file(session, sdist)  # the same filename again replaces the completed file
    assert count(dbsession, Attestation) == 0


# -- the legacy upload API: twine --attestations sends them as a form field ----------------

def legacy(app, token, path, *, attestations=None, status=200):
    fields = twine_fields(path)
    if attestations is not None:
        fields.append(("attestations", json.dumps(attestations)))
    body, content_type = encode(fields + [("content", (path.name, path.read_bytes()))])
    return app.post("/legacy/", body, status=status, headers={**basic(token), "Content-Type": content_type})


def test_the_legacy_api_verifies_the_attestations_field(app, issuer, dbsession, sdist):
    add_publisher(dbsession, PROJECT, repository=REPO, workflow=WORKFLOW)
    token = mint(app, issuer.github(REPO, WORKFLOW)).json["token"]
    legacy(app, token, sdist, attestations=[attestation()])
    assert fetch(dbsession, ReleaseFile, filename=SDIST).provenance["attestation_bundles"][0]["publisher"] == PUBLISHER


def test_the_legacy_api_refuses_bad_attestations_and_stores_nothing(app, issuer, dbsession, sdist, make_user,
                                                                     tmp_path):
    refused = legacy(app, make_user("bob"), sdist, attestations=[attestation()], status=400)
    assert "only accepted from a token minted by a trusted publisher" in refused.status
    add_publisher(dbsession, PROJECT, repository=REPO, workflow=WORKFLOW)
    token = mint(app, issuer.github(REPO, WORKFLOW)).json["token"]
    assert "non-empty JSON array" in legacy(app, token, sdist, attestations=[], status=400).status
    (tmp_path / "other").mkdir()
    other = build_sdist(tmp_path / "other", "pypi_attestation_models", VERSION)
    assert "does not verify" in legacy(app, token, other, attestations=[attestation()], status=400).status
    assert "Attestations 1 and 2" in legacy(app, token, sdist, attestations=[attestation()] * 2, status=400).status
    assert count(dbsession, ReleaseFile) == 0 and count(dbsession, Attestation) == 0
    assert count(dbsession, FileUploadSession) == 0


# -- provenance: PEP 740 in the simple API (1.3) of the stage and of /simple/ -------------

SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def test_the_provenance_object_is_pypis():
    """The object this index builds for the attestation PyPI published is PyPI's own, byte for byte
    as JSON (pypi_attestations-0.0.19.tar.gz.provenance)."""
    name = "pypi_attestations-0.0.19.tar.gz"
    row = SimpleNamespace(body=attestation(name, ".publish.attestation"),
                          publisher={**PUBLISHER, "repository": "trailofbits/pypi-attestations"})
    assert attestations.provenance(SimpleNamespace(attested=True, attestations=[row])) == json.loads(
        (SHARED / (name + ".provenance")).read_text())


def test_the_stage_and_the_index_serve_the_provenance(app, issuer, dbsession, sdist, tmp_path):
    ci = trusted(app, issuer, dbsession)
    session, file_session = staged_file(ci, sdist)
    post_attestations(ci, file_session, [attestation()])
    ci.send_bytes(file_session, sdist.read_bytes())
    ci.post(file_session["links"]["complete"], status=201)
    wheel = build_wheel(tmp_path, "pypi_attestation_models", VERSION)  # a file without attestations
    ci.upload(session, wheel)
    expected = {"version": 1, "attestation_bundles": [{"publisher": PUBLISHER, "attestations": [attestation()]}]}

    stage = app.get(session["links"]["stage"] + PROJECT + "/", headers=SIMPLE_JSON).json
    assert stage["meta"]["api-version"] == "1.3"
    files = {f["filename"]: f for f in stage["files"]}
    assert files[wheel.name]["provenance"] is None
    staged = app.get(files[SDIST]["provenance"])
    assert staged.content_type == "application/vnd.pypi.integrity.v1+json" and staged.json == expected
    assert staged.headers["Cache-Control"] == "private, no-store"
    page = app.get(session["links"]["stage"] + PROJECT + "/", headers={"Accept": "text/html"}).text
    assert f'data-provenance="{files[SDIST]["provenance"]}"' in page
    assert page.count("data-provenance") == 1

    ci.publish(session)
    app.get(files[SDIST]["provenance"], status=404)  # the stage is gone with its session
    index = app.get(f"/simple/{PROJECT}/", headers=SIMPLE_JSON).json
    assert index["meta"]["api-version"] == "1.3"
    published = {f["filename"]: f for f in index["files"]}
    assert published[wheel.name]["provenance"] is None
    served = app.get(published[SDIST]["provenance"])
    assert served.content_type == "application/vnd.pypi.integrity.v1+json" and served.json == expected
    html = app.get(f"/simple/{PROJECT}/").text
    assert f'data-provenance="{published[SDIST]["provenance"]}"' in html
    assert '<meta name="pypi:repository-version" content="1.3">' in html
    # PEP 700's upload-time stays the time the file became public, not when its bytes arrived.
    row = fetch(dbsession, ReleaseFile, filename=SDIST)
    assert published[SDIST]["upload-time"] == row.published_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    app.get(published[SDIST]["provenance"].replace(SDIST, wheel.name), status=404)
    app.get(published[wheel.name]["url"].replace("/files/", "/integrity/") + "/provenance", status=404)
