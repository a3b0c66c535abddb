"""Trusted Publishing on the built-in index: a CI job's OIDC token (a JWT) exchanged for a
short-lived API token of the one project whose trusted publisher the token's claims name,
as PyPI's ``/_/oidc/mint-token`` does."""

from __future__ import annotations

import datetime
import logging

import jwt
import sqlalchemy as sa

from ..db import insert, utcnow
from ..logs import audit_log
from .auth import new_token
from .issuers import Issuer, JWKSCache, KeyUnavailable, OIDCSettings
from .models import Project, TrustedPublisher, UsedOIDCToken

log = logging.getLogger(__name__)
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
REQUIRED_CLAIMS = ["iss", "aud", "exp", "nbf", "iat", "jti"]


class TokenRefused(Exception):
    """Why a token was not exchanged: ``code`` as PyPI's answer names it."""

    def __init__(self, code: str, description: str):
        super().__init__(description)
        self.code, self.description = code, description


def verify(oidc: OIDCSettings, keys: JWKSCache, token: str) -> tuple[Issuer, dict]:
    """The issuer and the claims of ``token``, its signature checked with the issuer's key
    and its ``iss``, ``aud``, ``exp``, ``nbf`` and ``iat``; TokenRefused otherwise."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenRefused("invalid-token", f"malformed token: {exc}")
    issuer = oidc.issuer(unverified.get("iss")) if isinstance(unverified.get("iss"), str) else None
    if issuer is None:
        raise TokenRefused("invalid-token", f"this index trusts no issuer {unverified.get('iss')!r}")
    try:
        key = keys.key(issuer, header.get("kid"))
    except KeyUnavailable as exc:
        raise TokenRefused("invalid-token", str(exc))
    try:
        claims = jwt.decode(token, key=key, algorithms=ALGORITHMS, audience=oidc.audience, issuer=issuer.url,
                            leeway=oidc.leeway, options={"require": REQUIRED_CLAIMS})
    except jwt.PyJWTError as exc:
        raise TokenRefused("invalid-token", f"the token does not verify: {exc}")
    # PyJWT checks that iat is a number, not that it lies in the past.
    now = utcnow().timestamp()
    if not isinstance(claims["iat"], (int, float)) or claims["iat"] > now + oidc.leeway:
        raise TokenRefused("invalid-token", "the token was issued in the future (iat)")
    return issuer, claims


def _claim(claims: dict, name: str) -> str:
    value = claims.get(name)
    return value if isinstance(value, str) else ""


def matches(publisher: TrustedPublisher, claims: dict) -> bool:
    """Whether the verified ``claims`` are those of a run of ``publisher``'s workflow."""
    repository = publisher.repository.lower()
    if publisher.kind == "github":
        if _claim(claims, "repository").lower() != repository:
            return False
        # The job's workflow (job_workflow_ref), or the run's when the job calls a reusable one.
        wanted = f"{repository}/.github/workflows/{publisher.workflow.lower()}"
        if not any(_claim(claims, name).partition("@")[0].lower() == wanted and "@" in _claim(claims, name)
                   for name in ("job_workflow_ref", "workflow_ref")):
            return False
    else:
        if _claim(claims, "project_path").lower() != repository:
            return False
        # ci_config_ref_uri: <host>/<namespace>/<project>//<CI file path>@<ref>
        path = _claim(claims, "ci_config_ref_uri").partition("@")[0]
        _, _, rest = path.partition("/")
        if rest.lower() != f"{repository}//{publisher.workflow.lower()}":
            return False
    return not publisher.environment or _claim(claims, "environment").lower() == publisher.environment.lower()


def find_publisher(db, issuer: Issuer, claims: dict) -> TrustedPublisher:
    """The one trusted publisher the claims name; TokenRefused when none or several do."""
    repository = _claim(claims, "repository" if issuer.kind == "github" else "project_path").lower()
    candidates = db.scalars(sa.select(TrustedPublisher).where(
        TrustedPublisher.kind == issuer.kind, sa.func.lower(TrustedPublisher.repository) == repository)).all()
    found = [p for p in candidates if matches(p, claims)]
    # A publisher bound to an environment is the more specific match.
    specific = [p for p in found if p.environment] or found
    if not specific:
        raise TokenRefused("invalid-publisher", "valid token, but no trusted publisher of this index matches "
                           f"its claims ({issuer.kind} {repository or '?'})")
    if len({p.project_name for p in specific}) > 1:
        raise TokenRefused("invalid-publisher", "the token's workflow is the trusted publisher of several projects "
                           f"({', '.join(sorted({p.project_name for p in specific}))}); bind each to an environment")
    publisher = specific[0]
    if publisher.pending and db.scalar(sa.select(Project.id).where(Project.normalized_name == publisher.project_name)):
        raise TokenRefused("invalid-pending-publisher",
                           f"{publisher.project_name!r} was registered since this pending publisher was added")
    return publisher


def exchange(request, oidc: OIDCSettings, keys: JWKSCache, token: str) -> tuple[str, datetime.datetime]:
    """Mint an API token for the publisher ``token`` names, usable only for its project, in
    the request's transaction; the token's ``jti`` is spent (refused a second time)."""
    issuer, claims = verify(oidc, keys, token)
    publisher = find_publisher(request.db, issuer, claims)
    expires = datetime.datetime.fromtimestamp(claims["exp"], datetime.UTC)
    if not insert(request.db, UsedOIDCToken(issuer=issuer.url, jti=str(claims["jti"])[:200], expires_at=expires)):
        raise TokenRefused("invalid-reuse-token", "this token was already exchanged (its jti was used)")
    expires_at = utcnow() + datetime.timedelta(seconds=oidc.token_lifetime)
    minted = new_token(request.db, publisher.user, f"trusted publisher {publisher.id}", expires_at,
                       publisher=publisher)
    audit_log.info("minted a token for %s from trusted publisher %s (%s %s %s, jti %s)", publisher.project_name,
                   publisher.id, publisher.kind, publisher.repository, publisher.workflow, claims["jti"])
    return minted, expires_at


def forget_spent(db, now: datetime.datetime) -> int:
    """Drop the spent tokens that have expired: a replay of one fails on ``exp`` anyway (the
    leeway past it too)."""
    return db.execute(sa.delete(UsedOIDCToken).where(UsedOIDCToken.expires_at < now)).rowcount


def forget_spent_tokens(request) -> None:
    """The periodic sweep's part (tasks.sweep_index)."""
    leeway = request.registry["upload2.oidc"].leeway
    forgotten = forget_spent(request.db, utcnow() - datetime.timedelta(seconds=leeway))
    if forgotten:
        log.info("forgot %d spent OIDC tokens past their expiry", forgotten)
