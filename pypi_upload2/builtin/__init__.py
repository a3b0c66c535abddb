"""The built-in index: the standalone server's users and API tokens, projects and roles,
releases, files and public ``/simple/``, as one implementation of the plugin's interfaces
(interfaces.py). ``pypi_upload2`` includes it unless ``upload2.index`` names another."""

from ..interfaces import (IAuthentication, IAuthorization, IFilenames, IProjects, IPublishApproval, IPublishedArchives,
                          IPublishedFiles, IPublisher, IReleases, ITrustedPublishing)


def includeme(config):
    from . import models  # noqa: F401  (its tables join the plugin's metadata)
    from .auth import RoleAuthorization, TokenAuthentication
    from .index import BuiltinIndex

    config.register_service_factory(TokenAuthentication.create_service, IAuthentication)
    for iface in (IAuthorization, IPublishApproval, ITrustedPublishing):
        config.register_service_factory(RoleAuthorization.create_service, iface)
    for iface in (IProjects, IReleases, IFilenames, IPublisher, IPublishedFiles, IPublishedArchives):
        config.register_service_factory(BuiltinIndex.create_service, iface)
    config.registry["upload2.index_checks"] = ("pypi_upload2.builtin.checks.project_quota",)
    # The periodic sweep's part: spent OIDC tokens are forgotten once expired.
    config.registry["upload2.index_sweeps"] = ("pypi_upload2.builtin.oidc.forget_spent_tokens",)
    # Trusted Publishing's token exchange (/_/oidc/...), at PyPI's URLs.
    config.include(".trusted_publishing")
    # The public index, unless a host serves its own /simple/ and /files/.
    if config.registry["upload2.settings"].simple_index:
        config.include(".views")
