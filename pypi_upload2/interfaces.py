"""The capabilities a host index can swap, each looked up with ``request.find_service``."""

from zope.interface import Interface


class IFileStorage(Interface):
    """Where the bytes of distribution files live, addressed by server-derived keys."""

    def writer(key):
        """A context manager yielding a binary file object; on clean exit the bytes are
        stored under ``key`` (replacing what was there), on error nothing is kept."""

    def open(key):
        """Open the bytes stored under ``key`` for reading."""

    def path(key):
        """A local filesystem path for ``key`` (archive inspection needs seekable files; the
        resumable mechanism appends to it in place, so it must be writable and shared by
        every process that serves uploads)."""

    def move(source, target):
        """Store the bytes under ``source`` as ``target`` (replacing what was there), without
        copying them where the backend can; ``source`` is gone after."""

    def size(key):
        """The stored size in bytes, or ``None`` when nothing is stored under ``key``."""

    def delete(key):
        """Remove ``key``; removing a missing key is not an error."""


class IAuthentication(Interface):
    """Who is making the request."""

    def identify(request):
        """Return the authenticated ``User``, or ``None``."""


class IAuthorization(Interface):
    """Who may upload what: the index's permission and name-registration policy."""

    def may_upload(user, project):
        """True when ``user`` may upload to the existing ``project`` right now."""

    def may_register(user, name):
        """True when ``user`` may register the new normalized project ``name``."""


class ITaskQueue(Interface):
    """Where deferred work goes: a worker pool behind a broker, or the web process itself."""

    def enqueue(name, *args):
        """Send task ``name`` with ``args`` once the request's transaction commits; nothing
        is sent when it aborts."""
