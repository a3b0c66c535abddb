"""The HTTP side of ``http-post-bytes`` (mechanisms/http_post_bytes.py)."""

from __future__ import annotations

from pyramid.response import Response
from .registration import upload2_view

from ..mechanisms import http_post_bytes
from ..problems import UnsupportedMediaType
from ..services import loading
from .requests import check_content_length


@upload2_view(route_name=http_post_bytes.ROUTE, request_method="POST")
def post_bytes(request):
    # A file that negotiated another mechanism has no such upload resource (404). Where the
    # storage moves in place, the mechanism locks the file once the body has arrived.
    file_session = loading.file_session(request, lock=None if http_post_bytes.body_before_lock(request) else "update",
                                        mechanism=http_post_bytes.IDENTIFIER)
    check_content_length(request)
    content_type = (request.content_type or "application/octet-stream").lower()
    if content_type != "application/octet-stream":
        raise UnsupportedMediaType("Unsupported Content-Type",
                                   f"Send the file as application/octet-stream, not {content_type}.",
                                   source="Content-Type")
    http_post_bytes.receive(request, file_session, request.body_file, request.content_length)
    return Response(status=204, content_type=None)
