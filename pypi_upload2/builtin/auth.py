"""The built-in index's principals: API tokens over HTTP Basic (``__token__``), and
project roles."""

from __future__ import annotations

import hmac
import secrets

import sqlalchemy as sa
from sqlalchemy import orm
from zope.interface import implementer

from ..db import parse_id
from ..interfaces import IAuthentication, IAuthorization
from ..services.auth import basic_credentials, secret_digest
from .models import ApiToken, Role, User

TOKEN_PREFIX = "pypi-upload2-"


def new_token(db, user: User) -> str:
    """Create an API token for ``user``; the plain token is returned once, never stored."""
    secret = secrets.token_urlsafe(32)
    token = ApiToken(user=user, digest=secret_digest(secret))
    db.add(token)
    db.flush()
    return f"{TOKEN_PREFIX}{token.id}-{secret}"


@implementer(IAuthentication)
class TokenAuthentication:
    def __init__(self, db):
        self.db = db

    @classmethod
    def create_service(cls, context, request):
        return cls(request.db)

    def identify(self, request) -> User | None:
        credentials = basic_credentials(request)
        if credentials is None or credentials[0] != "__token__":
            return None
        token_text, _, secret = credentials[1].removeprefix(TOKEN_PREFIX).partition("-")
        token_id = parse_id(token_text)
        if token_id is None or not secret:
            return None
        token = self.db.get(ApiToken, token_id, options=[orm.joinedload(ApiToken.user)])
        # Constant-time comparison of digests, so timing tells nothing about the secret.
        if token is None or not hmac.compare_digest(token.digest, secret_digest(secret)):
            return None
        return token.user

    def principal_key(self, principal: User) -> str:
        return str(principal.id)

    def challenge(self, request) -> str:
        return f'Basic realm="{request.registry["upload2.settings"].realm}"'


@implementer(IAuthorization)
class RoleAuthorization:
    """Anyone with a role on a project may upload to it; any user may register a free name."""

    def __init__(self, db):
        self.db = db

    @classmethod
    def create_service(cls, context, request):
        return cls(request.db)

    def may_upload(self, request, principal: User, project) -> bool:
        return self.db.scalar(
            sa.select(sa.func.count()).select_from(Role)
            .where(Role.user_id == principal.id, Role.project_id == project.id)
        ) > 0

    def may_register(self, request, principal: User, name: str) -> bool:
        return True
