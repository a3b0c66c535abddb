"""The built-in index's web pages: a front page with search and recent releases, public
project and release pages, and for signed-in maintainers their publishing sessions with
publish, cancel, extend and delete-a-file behind confirmation pages, and their release groups.

Server-side Jinja2 and plain forms; the standalone ``main`` includes it when ``upload2.web``
is on. The pages sign in with a password into a signed cookie session; the Upload 2.0 API
never reads that cookie, and the pages never read API tokens.
"""

from __future__ import annotations

from pyramid.exceptions import ConfigurationError
from pyramid.session import SignedCookieSessionFactory

from . import settings as settings_module

COOKIE_NAME = "upload2_web"


def includeme(config):
    if not config.registry["upload2.settings"].simple_index:
        raise ConfigurationError("upload2.web = true needs upload2.simple_index: the pages link to its files")
    web = settings_module.parse(config.get_settings())
    config.registry["upload2.web.settings"] = web
    config.set_session_factory(SignedCookieSessionFactory(
        web.secret, cookie_name=COOKIE_NAME, secure=web.secure_cookie, httponly=True, samesite="Lax",
        timeout=web.idle_timeout, reissue_time=max(1, web.idle_timeout // 10), max_age=None))

    config.include("pyramid_jinja2")
    config.add_jinja2_renderer(".html")
    config.add_jinja2_search_path("pypi_upload2.builtin.web:templates", name=".html")
    config.add_static_view("static", "pypi_upload2.builtin.web:static", cache_max_age=3600)

    config.add_route("web.home", "/")
    config.add_route("web.project", "/project/{name}/")
    config.add_route("web.release", "/project/{name}/{version}/")
    config.add_route("web.login", "/account/login/")
    config.add_route("web.logout", "/account/logout/")
    config.add_route("web.sessions", "/manage/sessions/")
    config.add_route("web.session", "/manage/sessions/{session_id}/")
    config.add_route("web.session.action", "/manage/sessions/{session_id}/{action:publish|cancel|extend}/")
    config.add_route("web.file.delete", "/manage/sessions/{session_id}/files/{file_id}/delete/")
    config.add_route("web.group", "/manage/groups/{group_id}/")
    config.add_route("web.group.action", "/manage/groups/{group_id}/{action:publish|cancel|extend}/")
    config.add_request_method(".identity.signed_in_user", "web_user", reify=True)
    config.include(".errors")
    config.scan(".public")
    config.scan(".signin")
    config.scan(".manage")
    config.scan(".groups")
