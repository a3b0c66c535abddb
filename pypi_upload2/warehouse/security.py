"""Who the caller is and what they may do, as Warehouse's security policy says: macaroons
over ``__token__`` Basic auth, and the ``projects:upload`` permission on the project."""

from __future__ import annotations

from zope.interface import implementer

from ..interfaces import IAuthentication, IAuthorization


@implementer(IAuthentication, IAuthorization)
class WarehouseSecurity:
    @classmethod
    def create_service(cls, context, request):
        return cls()

    def identify(self, request):
        """A user's API token (a ``UserContext`` with its macaroon) or a trusted publisher's
        token; never a browser's signed-in session, so no cookie can drive the API."""
        identity = request.identity
        if identity is None or (hasattr(identity, "macaroon") and identity.macaroon is None):
            return None
        return identity

    def principal_key(self, principal) -> str:
        user = getattr(principal, "user", None)
        if user is not None:
            return str(user.id)
        return f"publisher:{principal.publisher.id}"

    def challenge(self, request) -> str:
        # Macaroons travel as the password of __token__, as twine sends them to forklift.
        return f'Basic realm="{request.registry["upload2.settings"].realm}"'

    def may_upload(self, request, principal, project) -> bool:
        from warehouse.authnz import Permissions

        return bool(request.has_permission(Permissions.ProjectsUpload, project))

    def may_register(self, request, principal, name) -> bool:
        """As forklift: only a user creates a project, with a verified primary email and 2FA."""
        user = getattr(principal, "user", None)
        return bool(user is not None and user.primary_email and user.primary_email.verified
                    and user.has_two_factor)
