"""Signing in with a username and password, with a lockout after repeated failures that is
kept in the database (so it holds across every process), and signing out."""

from __future__ import annotations

import datetime
import math

import sqlalchemy as sa
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from ... import logs
from ...db import utcnow
from .. import passwords
from ..models import User
from .identity import sign_in, sign_out

REFUSED = "Wrong username or password."


def lockout(web, failures: int) -> datetime.timedelta | None:
    """How long ``failures`` consecutive failures lock an account: none below the threshold,
    then lockout_seconds doubling with each further failure, at most max_lockout."""
    if failures < web.lockout_after:
        return None
    exponent = min(failures - web.lockout_after, 32)
    return datetime.timedelta(seconds=min(web.lockout_seconds * 2 ** exponent, web.max_lockout))


def attempt(request, username: str, password: str) -> User | str:
    """The user, signed in; or why not. A failure is counted and committed like any other
    write of the request; the row lock makes concurrent attempts on one account count each."""
    web = request.registry["upload2.web.settings"]
    now = utcnow()
    user = request.db.scalar(sa.select(User).where(User.username == username).with_for_update())
    if user is not None and user.locked_until is not None and user.locked_until > now:
        minutes = math.ceil((user.locked_until - now).total_seconds() / 60)
        return f"Too many failed sign-ins: this account is locked for {minutes} more minute(s)."
    # Verified even for an unknown user (against a dummy hash): timing does not tell names apart.
    if passwords.verify(user.password_hash if user is not None else None, password):
        user.failed_logins, user.locked_until = 0, None
        return user
    if user is not None:
        user.failed_logins += 1
        if (locked_for := lockout(web, user.failed_logins)) is not None:
            user.locked_until = now + locked_for
            logs.audit(request, f"locked {user.username} for {int(locked_for.total_seconds())} s "
                                f"after {user.failed_logins} failed sign-ins")
    return REFUSED


def safe_next(request, target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another host."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return request.route_url("web.sessions")


@view_config(route_name="web.login", request_method="GET", renderer="login.html")
def login_form(request):
    return {"next": request.params.get("next", ""), "error": None, "username": ""}


@view_config(route_name="web.login", request_method="POST", renderer="login.html", require_csrf=True)
def login(request):
    username = request.POST.get("username", "").strip()
    found = attempt(request, username, request.POST.get("password", ""))
    if isinstance(found, str):
        request.response.status = 429 if found != REFUSED else 400
        return {"next": request.POST.get("next", ""), "error": found, "username": username}
    sign_in(request, found)
    logs.note(request, user=found.username)
    return HTTPSeeOther(safe_next(request, request.POST.get("next")))


@view_config(route_name="web.logout", request_method="POST", require_csrf=True)
def logout(request):
    sign_out(request)
    return HTTPSeeOther(request.route_url("web.home"))
