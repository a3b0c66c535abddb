"""Forklift stays the legacy endpoint; the plugin only answers the 2.0 media type at its URL
(the PEP's content negotiation), and refuses a staged legacy upload, which forklift would
publish at once."""

from __future__ import annotations

from pyramid.settings import asbool

from ..problems import BadRequest
from ..views.legacy import UPLOAD2_REQUEST, add_upload2_dispatch
from ..views.registration import view_options

FORKLIFT_ROUTE = "forklift.legacy.file_upload"


def staged_upload(request):
    raise BadRequest("Staged legacy uploads are not supported",
                     "This index publishes legacy uploads at once; stage a release with the Upload 2.0 API "
                     f"at {request.route_url('upload2.root')} instead.", source="staged")


class StagedPredicate:
    """A legacy form or header asking to stage the file (staged=true, X-Upload-Staged: true)."""

    def __init__(self, value, config):
        self.value = value

    def text(self):
        return f"upload2_staged = {self.value}"

    phash = text

    def __call__(self, context, request):
        return (asbool(request.headers.get("X-Upload-Staged"))
                or asbool(request.POST.get("staged"))) == self.value


def includeme(config):
    forklift_domain = config.get_settings().get("forklift.domain")
    # Forklift's routes match on ``:action``, which a 2.0 JSON body lacks: this one, after them,
    # takes the 2.0 media type. Called directly: the index is included before the plugin's views
    # add the ``add_upload2_dispatch`` directive.
    config.add_route("upload2.legacy_dispatch", "/legacy/", header=UPLOAD2_REQUEST, domain=forklift_domain)
    add_upload2_dispatch(config, "upload2.legacy_dispatch")
    config.add_view_predicate("upload2_staged", StagedPredicate)
    config.add_view(staged_upload, route_name=FORKLIFT_ROUTE, request_method="POST", upload2_staged=True,
                    **view_options(config.registry, "POST"))
