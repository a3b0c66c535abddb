"""Trusted Publishing from a CI job, as uv and twine do it: the job's OIDC token (GitHub
Actions' token service, or a GitLab ``id_tokens`` variable) exchanged at the index's
``/_/oidc/mint-token`` for a short-lived API token; no stored secret."""

from __future__ import annotations

import os
import re
import urllib.parse

import httpx

from .config import TOKEN_USERNAME, Credentials, Repository

MODES = ("auto", "always", "never")


class TrustedPublishingError(Exception):
    """No token could be had: not in a CI job with an OIDC token, or the index refused it."""


def _gitlab_variable(audience: str) -> str:
    # The ``id`` library's convention (twine): the audience, upper-cased, non-alphanumerics as _.
    return re.sub(r"[^A-Z0-9]", "_", audience.upper()) + "_ID_TOKEN"


def available(env) -> bool:
    """Whether this looks like a CI job that can obtain an OIDC token."""
    github = env.get("ACTIONS_ID_TOKEN_REQUEST_URL") and env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    gitlab = env.get("GITLAB_CI") and any(k.endswith("_ID_TOKEN") for k in env)
    return bool(github or gitlab or env.get("UPLOAD2_ID_TOKEN"))


def oidc_token(http: httpx.Client, audience: str, env) -> str:
    """The CI job's OIDC token for ``audience``."""
    if env.get("ACTIONS_ID_TOKEN_REQUEST_URL") and env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN"):
        url = env["ACTIONS_ID_TOKEN_REQUEST_URL"]
        url += ("&" if urllib.parse.urlsplit(url).query else "?") + urllib.parse.urlencode({"audience": audience})
        try:
            response = http.get(url, headers={"Authorization": f"bearer {env['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"})
            response.raise_for_status()
            value = response.json()["value"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise TrustedPublishingError(f"GitHub Actions gave no OIDC token: {exc} (does the job have the "
                                         "permission id-token: write?)")
        return value
    for name in (_gitlab_variable(audience), "UPLOAD2_ID_TOKEN"):
        if env.get(name):
            return env[name]
    raise _no_token(audience)


def _no_token(audience: str | None) -> TrustedPublishingError:
    entry = (f"{_gitlab_variable(audience)} with aud: {audience}" if audience
             else "named after the index's audience (PYPI_UPLOAD2_ID_TOKEN for pypi-upload2)")
    return TrustedPublishingError("no OIDC token: in GitHub Actions the job needs the permission id-token: write; "
                                  f"in GitLab CI an id_tokens entry {entry}")


def mint(repository_url: str, env=None, *, timeout: float = 30.0, transport=None) -> str:
    """An API token for the index of ``repository_url``, minted for this CI job's workflow."""
    env = os.environ if env is None else env
    base = urllib.parse.urljoin(repository_url, "/")
    with httpx.Client(timeout=timeout, follow_redirects=False, transport=transport) as http:
        try:
            response = http.get(base + "_/oidc/audience")
            if response.status_code in (403, 404):
                raise TrustedPublishingError(f"{base} does not offer Trusted Publishing (HTTP {response.status_code})")
            response.raise_for_status()
            audience = response.json()["audience"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise TrustedPublishingError(f"{base}_/oidc/audience: {exc}")
        token = oidc_token(http, audience, env)
        try:
            response = http.post(base + "_/oidc/mint-token", json={"token": token})
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TrustedPublishingError(f"{base}_/oidc/mint-token: {exc}")
    if response.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("token"), str):
        errors = body.get("errors") if isinstance(body, dict) else None
        reasons = "; ".join(f"{e.get('code')}: {e.get('description')}" for e in errors or [] if isinstance(e, dict))
        raise TrustedPublishingError(f"the index refused this job's OIDC token (HTTP {response.status_code}): "
                                     f"{reasons or response.text[:200]}")
    return body["token"]


def apply(mode: str, repository: Repository, warn, env=None, **kw) -> Repository:
    """``repository`` with a minted token as its credentials where ``mode`` says so: ``always``
    (a failure is an error), ``auto`` (only without other credentials, in a CI job that can
    get an OIDC token; a failure is a warning), ``never``."""
    env = os.environ if env is None else env
    if mode == "never" or (mode == "auto" and (repository.credentials is not None or not available(env))):
        return repository
    if not available(env):  # always, outside a CI job that can get a token
        raise _no_token(None)
    try:
        token = mint(repository.url, env, **kw)
    except TrustedPublishingError as exc:
        if mode == "always":
            raise
        warn(f"Trusted Publishing failed: {exc}")
        return repository
    return Repository(url=repository.url, credentials=Credentials(TOKEN_USERNAME, token),
                      pypirc_name=repository.pypirc_name)
