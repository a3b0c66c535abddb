"""The ``attestations_url`` of a file's mechanism: its PEP 740 attestations, posted before
completion (services/attestations.py verifies them when the file is completed)."""

from __future__ import annotations

from pyramid.response import Response

from .. import states
from ..mechanisms import ATTESTATIONS_ROUTE
from ..services import attestations, loading
from .registration import upload2_view
from .requests import read_json

CONTENT_TYPE = "application/json"


@upload2_view(route_name=ATTESTATIONS_ROUTE, request_method="POST")
def post_attestations(request):
    file_session = loading.file_session(request, lock="update")
    # Before completion only, in a session still open: a completed file's were verified with it.
    states.publishing(file_session.publishing_session, "edit", dry_run=True)
    states.file_upload(file_session, "transfer", dry_run=True)
    publisher = attestations.publisher(request, file_session.publishing_session.host_principal)
    body = read_json(request, CONTENT_TYPE, request.registry["upload2.settings"].max_attestations_size)
    attestations.store(request.db, file_session, attestations.parse(request, body), publisher)
    return Response(status=204, content_type=None)
