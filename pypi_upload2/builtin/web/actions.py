"""What the pages' action forms share: the extensions an "Extend" form offers, reading its
choice, and the redirect with a message that ends an action that succeeded."""

from __future__ import annotations

from pyramid.httpexceptions import HTTPSeeOther

# Seconds: label. The service bounds them, as it bounds the API's.
EXTENSIONS = {86400: "1 day", 7 * 86400: "7 days", 30 * 86400: "30 days"}


def requested_extension(request):
    """The form's ``extend-for``: anything but digits goes to the service as it is, which
    refuses it as the API would."""
    value = request.POST.get("extend-for", "")
    return int(value) if value.isdigit() else value


def done(request, message: str, target: str) -> HTTPSeeOther:
    request.session.flash(message)
    return HTTPSeeOther(target)
