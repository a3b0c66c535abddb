"""Forklift stays the legacy endpoint; the plugin only answers the 2.0 media type at its URL
(the PEP's content negotiation). In front of forklift it refuses what forklift would publish
at once but must not: a staged legacy upload, and a file for a release that a publishing
session is staging (its release is published whole, by that session)."""

from __future__ import annotations

from pyramid.settings import asbool

from ..problems import BadRequest, Conflict, Problem
from ..services import loading
from ..services.versions import canonical_version, parse_name_version
from ..views.legacy import UPLOAD2_REQUEST, add_upload2_dispatch, legacy_problem
from ..views.registration import view_options

FORKLIFT_ROUTE = "forklift.legacy.file_upload"


def staged_upload(request):
    raise BadRequest("Staged legacy uploads are not supported",
                     "This index publishes legacy uploads at once; stage a release with the Upload 2.0 API "
                     f"at {request.route_url('upload2.root')} instead.", source="staged")


def staged_release(request):
    """Forklift's upload of a file for a release a publishing session is staging: refused as
    the built-in legacy door refuses it, once the caller is known and may upload."""
    session = _live_session(request)
    if session is None:  # it ended since the predicate saw it
        raise Conflict("Session ended", "The release's publishing session just ended; retry.", source="version")
    loading.authorize(request, loading.principal(request), session)
    url = request.route_url("upload2.session", token=session.token)
    raise Conflict("Publishing session exists",
                   f"{session.name} {session.version} is being staged in a publishing session that is "
                   f"{session.status} ({url}): add the file to it with the Upload 2.0 API, or publish or cancel "
                   "it first.", source="version", headers={"Location": url})


def _live_session(request):
    try:
        _, normalized, version = parse_name_version(request.POST.get("name"), request.POST.get("version"))
    except Problem:  # forklift's own validation answers
        return None
    return loading.live_session_of(request.db, normalized, canonical_version(version))


class FormPredicate:
    """A view predicate on forklift's form: ``holds(request)`` equals the configured value."""

    name = ""

    def __init__(self, value, config):
        self.value = value

    def text(self):
        return f"{self.name} = {self.value}"

    phash = text

    def __call__(self, context, request):
        return self.holds(request) == self.value


class LiveSessionPredicate(FormPredicate):
    """The form's release has a live publishing session."""

    name = "upload2_live_session"

    @staticmethod
    def holds(request) -> bool:
        return _live_session(request) is not None


class StagedPredicate(FormPredicate):
    """A legacy form or header asking to stage the file (staged=true, X-Upload-Staged: true)."""

    name = "upload2_staged"

    @staticmethod
    def holds(request) -> bool:
        return asbool(request.headers.get("X-Upload-Staged")) or asbool(request.POST.get("staged"))


def includeme(config):
    forklift_domain = config.get_settings().get("forklift.domain")
    # Forklift's routes match on ``:action``, which a 2.0 JSON body lacks: this one, after them,
    # takes the 2.0 media type. Called directly: the index is included before the plugin's views
    # add the ``add_upload2_dispatch`` directive.
    config.add_route("upload2.legacy_dispatch", "/legacy/", header=UPLOAD2_REQUEST, domain=forklift_domain)
    add_upload2_dispatch(config, "upload2.legacy_dispatch")
    for predicate in (StagedPredicate, LiveSessionPredicate):
        config.add_view_predicate(predicate.name, predicate)
    config.add_view(staged_upload, route_name=FORKLIFT_ROUTE, request_method="POST", upload2_staged=True,
                    **view_options(config.registry, "POST"))
    config.add_view(staged_release, route_name=FORKLIFT_ROUTE, request_method="POST", upload2_staged=False,
                    upload2_live_session=True, **view_options(config.registry, "POST"))
    # twine shows forklift's status line: these refusals carry their detail in it, as forklift's do.
    config.add_exception_view(legacy_problem, context=Problem, route_name=FORKLIFT_ROUTE)
