"""File upload mechanisms. Each registers an identifier and a function that describes it
for one file upload session (the PEP's ``mechanism`` map); the registration order is the
server's order of preference, as advertised in ``mechanisms``."""


ATTESTATIONS_ROUTE = "upload2.file.attestations"


def attestations_url(request, file_session) -> dict:
    """The PEP's ``attestations_url`` key, for mechanisms that take attestations before
    completion (views/attestations.py), where the host has Trusted Publishing to verify
    them against (``ITrustedPublishing``); else no key."""
    from pyramid_services import find_service_factory

    from ..interfaces import ITrustedPublishing

    try:
        find_service_factory(request, ITrustedPublishing)
    except LookupError:
        return {}
    return {"attestations_url": request.route_url(
        ATTESTATIONS_ROUTE, token=file_session.publishing_session.token, file_id=file_session.id)}


def add_upload_mechanism(config, identifier: str, describe) -> None:
    def register():
        config.registry["upload2.mechanisms"][identifier] = describe

    config.action(("upload2.mechanism", identifier), register)


def includeme(config):
    config.registry.setdefault("upload2.mechanisms", {})
    config.add_directive("add_upload_mechanism", add_upload_mechanism)
    config.include(".http_post_bytes")
    config.include(".resumable")
