"""File upload mechanisms. Each registers an identifier and a function that describes it
for one file upload session (the PEP's ``mechanism`` map); the registration order is the
server's order of preference, as advertised in ``mechanisms``."""


def add_upload_mechanism(config, identifier: str, describe) -> None:
    def register():
        config.registry["upload2.mechanisms"][identifier] = describe

    config.action(("upload2.mechanism", identifier), register)


def includeme(config):
    config.registry.setdefault("upload2.mechanisms", {})
    config.add_directive("add_upload_mechanism", add_upload_mechanism)
    config.include(".http_post_bytes")
    config.include(".resumable")
