"""The plugin's settings, parsed once from the ``upload2.*`` keys of the host's settings."""

from __future__ import annotations

import dataclasses
import os

from pyramid.settings import asbool

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Settings:
    storage: str
    root_path: str = "/2.0/"
    session_lifetime: int = 7 * 24 * 3600
    file_session_lifetime: int = 24 * 3600
    max_session_lifetime: int = 30 * 24 * 3600
    max_file_size: int = 100 * MiB
    max_metadata_size: int = 1 * MiB
    status_retention: int = 7 * 24 * 3600
    simple_index: bool = True
    realm: str = "pypi-upload2"


def _path(value: str, here: str | None) -> str:
    # Relative paths in an ini file resolve against the ini's own folder.
    value = os.path.expanduser(value)
    if here and not os.path.isabs(value):
        value = os.path.join(here, value)
    return os.path.abspath(value)


def parse(settings: dict) -> Settings:
    here = settings.get("upload2.here")
    root = settings.get("upload2.root_path", "/2.0/")
    if not root.startswith("/"):
        root = "/" + root
    if not root.endswith("/"):
        root += "/"
    defaults = Settings(storage="")
    ints = {
        field.name: int(settings.get(f"upload2.{field.name}", getattr(defaults, field.name)))
        for field in dataclasses.fields(Settings)
        if field.type == "int"
    }
    return Settings(
        storage=_path(settings.get("upload2.storage", "var/files"), here),
        root_path=root,
        simple_index=asbool(settings.get("upload2.simple_index", True)),
        realm=settings.get("upload2.realm", defaults.realm),
        **ints,
    )
