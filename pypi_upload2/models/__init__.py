"""The data model: accounts, projects and releases, publishing and file upload sessions."""

from .accounts import ApiToken, User
from .projects import Project, Release, ReleaseFile, Role
from .sessions import FileUploadSession, PublishingSession

__all__ = [
    "ApiToken",
    "FileUploadSession",
    "Project",
    "PublishingSession",
    "Release",
    "ReleaseFile",
    "Role",
    "User",
]
