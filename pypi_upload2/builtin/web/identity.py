"""Who a browser is signed in as: the cookie session's user, never an API token."""

from __future__ import annotations

from pyramid.httpexceptions import HTTPSeeOther

from ... import logs
from ..models import User

USER_ID = "user_id"
# A tail of the password hash: a new password signs out every browser signed in with the old one.
PASSWORD_TAG = "password_tag"


def password_tag(user: User) -> str:
    return (user.password_hash or "")[-16:]


def signed_in_user(request) -> User | None:
    user_id = request.session.get(USER_ID)
    user = request.db.get(User, user_id) if isinstance(user_id, int) else None
    if user is None or not user.password_hash or request.session.get(PASSWORD_TAG) != password_tag(user):
        return None
    logs.note(request, user=user.username)
    return user


def require_user(request) -> User:
    """The signed-in user, or a redirect to the sign-in page that comes back here."""
    if request.web_user is None:
        raise HTTPSeeOther(request.route_url("web.login", _query={"next": request.path_qs}))
    return request.web_user


def sign_in(request, user: User) -> None:
    # A fresh session (and CSRF token) on every sign-in, so a session fixed before it is worth nothing.
    request.session.invalidate()
    request.session[USER_ID] = user.id
    request.session[PASSWORD_TAG] = password_tag(user)
    request.session.new_csrf_token()


def sign_out(request) -> None:
    request.session.invalidate()
