"""``http-post-bytes``: the file's bytes are the body of one POST to ``file_url``."""

from __future__ import annotations

from pyramid.response import Response
from pyramid.view import view_config

from ..db import utcnow
from ..interfaces import IFileStorage
from ..problems import ContentTooLarge, NotFound, UnsupportedMediaType
from ..services.cleanup import purge_on_abort
from ..services.streaming import TooLarge, copy_hashing
from ..states import file_upload
from ..views.context import file_session_context
from ..views.upload2 import file_url

IDENTIFIER = "http-post-bytes"


def describe(request, file_session) -> dict:
    return {"identifier": IDENTIFIER, "file_url": file_url(request, file_session, "upload2.file.bytes")}


@view_config(route_name="upload2.file.bytes", request_method="POST")
def receive(request):
    file_session = file_session_context(request, edit=True)
    if file_session.mechanism != IDENTIFIER:
        # The file negotiated another mechanism: this URL is not its upload resource.
        raise NotFound("No such upload", "This file is not uploaded with http-post-bytes.", source="url")
    file_upload(file_session, "transfer")
    content_type = (request.content_type or "application/octet-stream").lower()
    if content_type != "application/octet-stream":
        raise UnsupportedMediaType("Unsupported Content-Type",
                                   f"Send the file as application/octet-stream, not {content_type}.",
                                   source="Content-Type")
    declared = file_session.size
    too_large = ContentTooLarge("Too many bytes", f"The file was declared as {declared} bytes.",
                                source="body")
    if request.content_length is not None and request.content_length > declared:
        raise too_large
    storage = request.find_service(IFileStorage)
    try:
        with storage.writer(file_session.blob_key) as fh:
            size, digests = copy_hashing(request.body_file, fh, file_session.hashes, declared)
    except TooLarge:
        raise too_large
    purge_on_abort(request, [file_session.blob_key])
    file_session.received_size = size
    file_session.received_hashes = digests
    file_session.received_at = utcnow()
    return Response(status=204, content_type=None)


def includeme(config):
    config.add_upload_mechanism(IDENTIFIER, describe)
    config.scan(__name__)
