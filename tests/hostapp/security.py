"""The host's own authentication: ``Authorization: Bearer <key>``, and ACL permissions."""

from __future__ import annotations

import sqlalchemy as sa
from pyramid.authorization import ACLHelper, Allow, Authenticated, Everyone

from .models import Account, key_digest


class Root:
    """The host's root context: any account may register a new package."""

    __acl__ = [(Allow, Authenticated, "register")]


ROOT = Root()


class BearerPolicy:
    def identity(self, request) -> Account | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return None
        return request.db.scalar(sa.select(Account).where(Account.key_sha256 == key_digest(key.strip())))

    def authenticated_userid(self, request) -> str | None:
        account = request.identity
        return str(account.id) if account is not None else None

    def permits(self, request, context, permission):
        principals = [Everyone]
        if (account := request.identity) is not None:
            principals += [Authenticated, str(account.id)]
        return ACLHelper().permits(context, principals, permission)

    def remember(self, request, userid, **kw):
        return []

    def forget(self, request, **kw):
        return []
