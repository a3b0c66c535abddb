"""The PEP's two state machines as data, and the only functions that change a status.

Each table maps (current status, event) to the next status; an event not in the
table for the current status is refused with 409 Conflict, as the PEP's tables say.
"""

from __future__ import annotations

import enum

from .problems import Conflict


class PublishingStatus(enum.StrEnum):
    OPEN = "open"
    PROCESSING = "processing"
    PUBLISHED = "published"
    ERROR = "error"
    CANCELED = "canceled"


class FileStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELED = "canceled"


P, F = PublishingStatus, FileStatus

#: Publishing session transitions ("Publishing Session States").
PUBLISHING_TRANSITIONS: dict[tuple[PublishingStatus, str], PublishingStatus] = {
    (P.OPEN, "edit"): P.OPEN,
    (P.ERROR, "edit"): P.ERROR,
    (P.OPEN, "publish"): P.PUBLISHED,
    (P.ERROR, "publish"): P.PUBLISHED,
    (P.OPEN, "defer"): P.PROCESSING,
    (P.ERROR, "defer"): P.PROCESSING,
    (P.PROCESSING, "succeed"): P.PUBLISHED,
    (P.PROCESSING, "fail"): P.ERROR,
    (P.OPEN, "cancel"): P.CANCELED,
    (P.ERROR, "cancel"): P.CANCELED,
}

#: This index's extension (docs/api.md, scheduled publish): a session waiting for its
#: ``publish-after`` time goes back to open on an explicit unschedule. Kept apart from the
#: PEP's table, which it does not change.
SCHEDULE_TRANSITIONS: dict[tuple[PublishingStatus, str], PublishingStatus] = {
    (P.PROCESSING, "unschedule"): P.OPEN,
}

#: This index's release groups (docs/api.md) move as one publishing session would, a
#: scheduled publish's unschedule included.
GROUP_TRANSITIONS: dict[tuple[PublishingStatus, str], PublishingStatus] = {
    **PUBLISHING_TRANSITIONS, **SCHEDULE_TRANSITIONS}

#: File upload session transitions ("File Upload Session States").
FILE_TRANSITIONS: dict[tuple[FileStatus, str], FileStatus] = {
    (F.PENDING, "transfer"): F.PENDING,
    (F.PENDING, "complete"): F.COMPLETED,
    (F.PENDING, "defer"): F.PROCESSING,
    (F.PENDING, "fail"): F.ERROR,
    (F.PROCESSING, "succeed"): F.COMPLETED,
    (F.PROCESSING, "fail"): F.ERROR,
    (F.PENDING, "cancel"): F.CANCELED,
    (F.COMPLETED, "cancel"): F.CANCELED,
    (F.ERROR, "cancel"): F.CANCELED,
    # The parent publishing session was canceled or expired: every file goes with it,
    # even one being processed (the PEP forbids refusing that cancellation).
    (F.PENDING, "discard"): F.CANCELED,
    (F.PROCESSING, "discard"): F.CANCELED,
    (F.COMPLETED, "discard"): F.CANCELED,
    (F.ERROR, "discard"): F.CANCELED,
}

#: Statuses in which a publishing session holds its name-version pair.
LIVE_PUBLISHING = (P.OPEN, P.PROCESSING, P.ERROR)
TERMINAL_PUBLISHING = (P.PUBLISHED, P.CANCELED)

# Separate maps: the two enums share values ("processing", "error", "canceled"), so one
# dict keyed by status would give a publishing session a file's reason.
_PUBLISHING_REASONS = {
    P.PROCESSING: "a publish of it is in progress",
    P.PUBLISHED: "no further changes are possible",
    P.CANCELED: "no further changes are possible",
}
_FILE_REASONS = {
    F.PROCESSING: "it is being processed; wait until it is completed or in error",
    F.COMPLETED: "it is done",
    F.ERROR: "the upload failed; delete the file and start a new file upload session",
    F.CANCELED: "no further changes are possible",
}


def _move(table, reasons, obj, event: str, what: str, dry_run: bool):
    key = (obj.status, event)
    if key not in table:
        reason = reasons.get(obj.status, f"'{event}' is not possible in this state")
        raise Conflict(
            f"Cannot {event} a {what} that is {obj.status}",
            f"The {what} is {obj.status}: {reason}.",
            source="status",
        )
    if not dry_run:
        obj.status = table[key]
    return table[key]


def publishing(session, event: str, *, dry_run: bool = False) -> PublishingStatus:
    """Apply ``event`` to a publishing session (or only check it may), else raise 409."""
    table = SCHEDULE_TRANSITIONS if event == "unschedule" else PUBLISHING_TRANSITIONS
    return _move(table, _PUBLISHING_REASONS, session, event, "publishing session", dry_run)


def group(release_group, event: str, *, dry_run: bool = False) -> PublishingStatus:
    """Apply ``event`` to a release group (or only check it may), else raise 409."""
    return _move(GROUP_TRANSITIONS, _PUBLISHING_REASONS, release_group, event, "release group", dry_run)


def file_upload(file_session, event: str, *, dry_run: bool = False) -> FileStatus:
    """Apply ``event`` to a file upload session (or only check it may), else raise 409."""
    return _move(FILE_TRANSITIONS, _FILE_REASONS, file_session, event, "file upload session", dry_run)
