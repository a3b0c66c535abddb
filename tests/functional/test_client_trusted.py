"""The release client's Trusted Publishing modes and attestation discovery, without a CI."""

from __future__ import annotations

import json

import httpx
import pytest
from pypi_upload2_client import trusted
from pypi_upload2_client.commands import _collect
from pypi_upload2_client.config import Credentials, Repository
from pypi_upload2_client.legacy import form_fields

from tests.conftest import build_sdist, build_wheel

REPOSITORY = Repository(url="https://index.example/legacy/", credentials=None)
GITHUB = {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://runner.example/token?api-version=2.0",
          "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runner-secret"}


def index(requests: list):
    """An index and a runner token service, in process: they answer as PyPI and GitHub do."""
    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/_/oidc/audience":
            return httpx.Response(200, json={"audience": "pypi-upload2"})
        if request.url.host == "runner.example":
            assert request.headers["Authorization"] == "bearer runner-secret"
            assert request.url.params["audience"] == "pypi-upload2"
            return httpx.Response(200, json={"value": "the-jwt"})
        if json.loads(request.content) == {"token": "the-jwt"}:
            return httpx.Response(200, json={"success": True, "token": "pypi-upload2-9-minted"})
        return httpx.Response(422, json={"message": "Token request failed",
                                         "errors": [{"code": "invalid-token", "description": "expired"}]})
    return httpx.MockTransport(handle)


def test_auto_uses_trusted_publishing_only_in_ci_without_credentials():
    warnings, requests = [], []
    assert trusted.apply("auto", REPOSITORY, warnings.append, env={}) is REPOSITORY
    given = Repository(url=REPOSITORY.url, credentials=Credentials("__token__", "x"))
    assert trusted.apply("auto", given, warnings.append, env=GITHUB) is given
    assert trusted.apply("never", REPOSITORY, warnings.append, env=GITHUB) is REPOSITORY
    minted = trusted.apply("auto", REPOSITORY, warnings.append, env=GITHUB, transport=index(requests))
    assert minted.credentials == Credentials("__token__", "pypi-upload2-9-minted")
    assert [str(r.url).split("?")[0] for r in requests] == [
        "https://index.example/_/oidc/audience", "https://runner.example/token", "https://index.example/_/oidc/mint-token"]
    assert warnings == []


def test_always_fails_outside_ci_and_reports_the_index_refusal():
    with pytest.raises(trusted.TrustedPublishingError, match="no OIDC token"):
        trusted.apply("always", REPOSITORY, print, env={})
    gitlab = {"GITLAB_CI": "true", "PYPI_UPLOAD2_ID_TOKEN": "another-jwt"}
    with pytest.raises(trusted.TrustedPublishingError, match="invalid-token: expired"):
        trusted.apply("always", REPOSITORY, print, env=gitlab, transport=index([]))
    warnings = []
    assert trusted.apply("auto", REPOSITORY, warnings.append, env=gitlab, transport=index([])) is REPOSITORY
    assert "invalid-token: expired" in warnings[0]


def test_attestations_beside_each_file_are_picked_up(tmp_path):
    sdist, wheel = build_sdist(tmp_path, "foo", "1.0"), build_wheel(tmp_path, "foo", "1.0")
    attestation = {"version": 1, "verification_material": {}, "envelope": {}}
    (tmp_path / (sdist.name + ".publish.attestation")).write_text(json.dumps(attestation))
    paths = [str(p) for p in sorted(tmp_path.iterdir())]  # dist/*: the attestation file included
    found = {d.filename: d.attestations for d in _collect(paths, attestations=True)}
    assert found == {sdist.name: [attestation], wheel.name: []}
    assert all(not d.attestations for d in _collect(paths))  # only with --attestations
    fields = dict(form_fields(next(d for d in _collect(paths, attestations=True) if d.filename == sdist.name)))
    assert json.loads(fields["attestations"]) == [attestation]
    (tmp_path / (wheel.name + ".publish.attestation")).write_text("not json")
    with pytest.raises(Exception, match="not a JSON attestation"):
        _collect(paths, attestations=True)
