"""The built-in index's principals: API tokens over HTTP Basic (``__token__``), and
project roles."""

from __future__ import annotations

import dataclasses
import datetime
import hmac
import secrets

import sqlalchemy as sa
from zope.interface import implementer

from ..db import parse_id, read_only, utcnow
from ..interfaces import IAuthentication, IAuthorization, IPublishApproval, ITrustedPublishing
from ..services.auth import basic_credentials, secret_digest
from .models import ApiToken, Role, TrustedPublisher, User

TOKEN_PREFIX = "pypi-upload2-"


# last_used is written at most this often per token, so a busy token costs no write per request.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


def new_token(db, user: User, description: str = "", expires_at: datetime.datetime | None = None, *,
              may_publish: bool = True, publisher: TrustedPublisher | None = None) -> str:
    """Create an API token for ``user`` (minted for ``publisher``: usable only for its project);
    the plain token is returned once, never stored."""
    secret = secrets.token_urlsafe(32)
    token = ApiToken(user=user, digest=secret_digest(secret), description=description, expires_at=expires_at,
                     may_publish=may_publish, publisher=publisher,
                     project_name=publisher.project_name if publisher is not None else None)
    db.add(token)
    db.flush()
    return f"{TOKEN_PREFIX}{token.id}-{secret}"


def _record_use(engine, token_id: int, now: datetime.datetime) -> None:
    """Stamp ``last_used`` in a transaction of its own once the request's has ended: the
    request never holds the token's row (concurrent uploads with one token would queue on
    it), and on SQLite never waits for its own write lock."""
    with read_only(engine, False).begin() as conn:
        conn.execute(sa.update(ApiToken).where(
            ApiToken.id == token_id,
            sa.or_(ApiToken.last_used.is_(None), ApiToken.last_used < now - LAST_USED_RESOLUTION))
            .values(last_used=now))


# Built once: every request runs it (a statement object keeps its compiled cache key). Columns,
# not entities: the ORM's loading would cost more than the query.
_tokens, _users = ApiToken.__table__, User.__table__
TOKEN_ROW = (sa.select(_tokens.c.digest, _tokens.c.expires_at, _tokens.c.last_used, _tokens.c.may_publish,
                       _tokens.c.publisher_id, _users.c.id.label("user_id"), _users.c.username)
             .join_from(_tokens, _users, _tokens.c.user_id == _users.c.id)
             .where(_tokens.c.id == sa.bindparam("id")))


@dataclasses.dataclass(frozen=True)
class TokenPrincipal:
    """A user, as the token of this request lets them act."""

    id: int  # the user's
    username: str
    may_publish: bool
    # Minted for a trusted publisher: the token acts for its one project only.
    publisher: TrustedPublisher | None = None


@implementer(IAuthentication)
class TokenAuthentication:
    def __init__(self, db):
        self.db = db

    @classmethod
    def create_service(cls, context, request):
        return cls(request.db)

    def identify(self, request) -> TokenPrincipal | None:
        credentials = basic_credentials(request)
        if credentials is None or credentials[0] != "__token__":
            return None
        token_text, _, secret = credentials[1].removeprefix(TOKEN_PREFIX).partition("-")
        token_id = parse_id(token_text)
        if token_id is None or not secret:
            return None
        token = self.db.execute(TOKEN_ROW, {"id": token_id}).first()
        # Constant-time comparison of digests, so timing tells nothing about the secret.
        if token is None or not hmac.compare_digest(token.digest, secret_digest(secret)):
            return None
        now = utcnow()
        if token.expires_at is not None and token.expires_at <= now:
            return None
        if token.last_used is None or token.last_used < now - LAST_USED_RESOLUTION:
            engine = self.db.get_bind()
            request.add_finished_callback(lambda _request: _record_use(engine, token_id, now))
        publisher = None if token.publisher_id is None else self.db.get(TrustedPublisher, token.publisher_id)
        return TokenPrincipal(token.user_id, token.username, token.may_publish, publisher)

    def principal_key(self, principal: TokenPrincipal) -> str:
        return str(principal.id)

    def challenge(self, request) -> str:
        return f'Basic realm="{request.registry["upload2.settings"].realm}"'


@implementer(IAuthorization, IPublishApproval, ITrustedPublishing)
class RoleAuthorization:
    """Anyone with a role on a project may upload to it, and publish with a token that is not
    stage-only; any user may register a free name. A token minted for a trusted publisher
    may upload to its project only, and register it only as a pending publisher's new name."""

    def __init__(self, db):
        self.db = db

    @classmethod
    def create_service(cls, context, request):
        return cls(request.db)

    def may_upload(self, request, principal: TokenPrincipal, project) -> bool:
        publisher = getattr(principal, "publisher", None)
        if publisher is not None:
            return publisher.project_id == project.id
        return self.db.scalar(
            sa.select(sa.func.count()).select_from(Role)
            .where(Role.user_id == principal.id, Role.project_id == project.id)
        ) > 0

    def may_register(self, request, principal: TokenPrincipal, name: str) -> bool:
        publisher = getattr(principal, "publisher", None)
        return publisher is None or (publisher.pending and publisher.project_name == name)

    def may_publish(self, request, principal, project) -> bool:
        # A user signed in to the web pages (with a password) acts with the user's whole authority.
        return principal.may_publish if isinstance(principal, TokenPrincipal) else True

    def publisher(self, request, principal) -> dict | None:
        publisher = getattr(principal, "publisher", None)
        return attestation_publisher(publisher) if publisher is not None else None


def attestation_publisher(publisher: TrustedPublisher) -> dict:
    """The publisher as PEP 740's provenance objects name it (pypi-attestations' models)."""
    if publisher.kind == "github":
        return {"kind": "GitHub", "repository": publisher.repository, "workflow": publisher.workflow,
                "environment": publisher.environment or None}
    return {"kind": "GitLab", "repository": publisher.repository, "workflow_filepath": publisher.workflow,
            "environment": publisher.environment or None}
