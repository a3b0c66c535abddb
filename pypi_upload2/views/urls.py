"""URLs of a session's resources, as the API's ``links`` give them."""

from __future__ import annotations


def file_url(request, file_session, route: str = "upload2.file") -> str:
    return request.route_url(route, token=file_session.publishing_session.token, file_id=file_session.id)
