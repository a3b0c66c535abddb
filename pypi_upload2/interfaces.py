"""What the plugin asks of its host, each capability looked up with ``request.find_service``.

The plugin owns publishing and file upload sessions; everything else belongs to the host
index: who the caller is and what they may do, its projects, releases and files, its one
filename namespace, its storage and its task queue. The built-in index (``pypi_upload2.builtin``)
and the Warehouse adapter (``pypi_upload2.warehouse``) are two implementations; docs/host-app.md
describes each method. Project and principal objects are the host's own, passed back to it
unchanged; the plugin records them only through the text keys the host gives.
"""

from zope.interface import Attribute, Interface


class IAuthentication(Interface):
    """Who is making the request: the host's principal."""

    def identify(request):
        """The host's principal for ``request``, or ``None`` (the API answers 401)."""

    def principal_key(principal):
        """A stable text key for ``principal`` (at most 64 characters): a session records
        its creator, and a reserved name its holder, by it."""

    def challenge(request):
        """The ``WWW-Authenticate`` value of a 401: how to authenticate (RFC 9110)."""


class IAuthorization(Interface):
    """What the caller may do, under the host's permissions."""

    def may_upload(request, principal, project):
        """True when ``principal`` may upload to the host's existing ``project`` now."""

    def may_register(request, principal, name):
        """True when ``principal`` may register the new normalized project ``name``."""


class IPublishApproval(Interface):
    """Optional: who may publish, where the host has credentials that may stage but not publish.
    Without it, whoever may upload to a session may publish it."""

    def may_publish(request, principal, project):
        """True if ``principal`` may publish a release of ``project`` (``None`` for a name only
        reserved); checked on every publish request and by the preflight."""


class ITrustedPublishing(Interface):
    """Optional: the trusted publisher (a CI workflow, PEP 740's publisher) whose OIDC token
    minted the caller's credential. Attestations are verified against it; without it, or for
    a credential no trusted publisher minted, attestations are refused."""

    def publisher(request, principal):
        """The publisher as a PEP 740 provenance object names it, a dict: ``{"kind": "GitHub",
        "repository": "owner/name", "workflow": "release.yml", "environment": None}`` or
        ``{"kind": "GitLab", "repository": "namespace/project", "workflow_filepath":
        ".gitlab-ci.yml", "environment": None}``; or ``None``."""


class IProjects(Interface):
    """The host's projects: found by name, and new names registered under its rules."""

    def find(request, normalized_name):
        """The host's project of that normalized name, or ``None``."""

    def display_name(project):
        """The project's name as the host shows it."""

    def check_new_name(request, principal, name):
        """Raise a ``pypi_upload2.problems.Problem`` when the host's naming rules refuse
        the new project name ``name`` (prohibited, too similar to another, rate-limited);
        called when a session reserves it, and again when it is registered."""

    def register(request, owner_key, name):
        """Create the host's project ``name`` owned by the principal whose key is
        ``owner_key``, in the current transaction, and return it: a reserved name's first
        publish (in a request, or in the task of a deferred publish)."""


class IReleases(Interface):
    """The host's releases, as the new-files window and the one-sdist rule see them."""

    def first_published(request, project, version):
        """When the release ``version`` (a ``packaging.version.Version``) of ``project``
        was first published (an aware UTC datetime), or ``None`` when it never was."""

    def has_sdist(request, project, version):
        """True when the published release already has an sdist."""


class IFilenames(Interface):
    """The host's one filename namespace, shared by every upload door."""

    def used(request, filename):
        """True when ``filename`` was ever used: published, deleted since, or reserved."""

    def reserve(request, filenames):
        """Reserve every one of ``filenames`` at once, in the current transaction, so that
        every door refuses them as if published; raise
        ``pypi_upload2.problems.FilenameConflict`` naming those already used, reserving none."""

    def release(request, filenames):
        """Free reserved ``filenames`` again (a publish that failed)."""


class IPublisher(Interface):
    """Publication as the host's own rows."""

    def publish(request, session, files, project):
        """Make the completed ``files`` of ``session`` the host's published release files of
        ``project``, all of them or none, in the current transaction. Their filenames are
        reserved already; the bytes are under each file's ``blob_key`` in ``IFileStorage``
        and its core metadata under ``metadata_key``. Raise ``FilenameConflict`` when the
        host refuses a filename, ``SecondSdist`` when the release has an sdist already."""


class IPublishedFiles(Interface):
    """The host's published files, as simple-index entries (``pypi_upload2.views.index.Entry``)."""

    def entries(request, project):
        """Every published file of ``project``: the stage lists them beside the session's."""

    def find_file(request, filename):
        """The published file ``filename`` as an entry, or ``None``."""


class IPublishedArchives(Interface):
    """Optional: the bytes of the host's published files. Without it, the stage diff compares
    files, wheel tags and sizes only, and says so."""

    def open(request, filename, metadata=False):
        """A readable, seekable binary file of the published file ``filename`` (``metadata``:
        its core metadata), or ``None``; the caller closes it."""


class IFileStorage(Interface):
    """Where the bytes of staged files live, addressed by server-derived keys. Nothing here
    promises a local path: every process that serves uploads reaches the same keys, on a
    shared disk or in an object store."""

    min_part_size = Attribute(
        "The fewest bytes ``appender`` may store in a part that does not end the file "
        "(0: any number); the resumable mechanism advertises it as ``min-append-size``.")
    moves_in_place = Attribute(
        "Optional, False when absent: True when ``move`` renames, whatever the size. "
        "http-post-bytes then receives a body under a key of its own before it locks the "
        "file, and moves it into place after.")

    def writer(key):
        """A context manager yielding a writable binary file object; on clean exit the bytes
        are stored under ``key`` (replacing what was there), on error nothing is kept."""

    def open(key):
        """A seekable, read-only binary file object over the bytes under ``key`` (archive
        inspection seeks in it); ``FileNotFoundError`` when nothing is stored there."""

    def size(key):
        """The stored size in bytes, or ``None`` when nothing is stored under ``key``."""

    def delete(key):
        """Remove ``key`` and any parts appended to it but never assembled; removing a
        missing key is not an error."""

    def copy(source, target):
        """Store the bytes under ``source`` as ``target`` too, inside the backend."""

    def move(source, target):
        """Store the bytes under ``source`` as ``target`` (replacing what was there), without
        copying them where the backend can; ``source`` is gone after."""

    def appender(key, offset):
        """A context manager yielding a writable binary file object: on clean exit its bytes
        become the part of ``key`` that starts at ``offset`` (the bytes stored so far, as the
        caller recorded them; anything past it is dropped), on error nothing is kept. A part
        is stored whole or not at all."""

    def assemble(key, size):
        """Make the parts appended to ``key`` up to ``size`` bytes the bytes under ``key``.
        Idempotent: a key already assembled is left as it is."""

    def unfinished(before):
        """The keys with parts appended (or a writer's parts sent) but never assembled, begun
        before the aware UTC datetime ``before``: the periodic sweep discards the parts of
        those no live file upload session owns."""

    def discard_parts(key):
        """Drop the parts appended to ``key`` (or a writer's parts sent) but never assembled;
        the bytes stored under ``key`` stay."""

    def download_url(key, filename, content_type):
        """A URL the client may fetch the bytes from directly (a presigned URL), or ``None``
        when the app must serve them itself."""


class ITaskQueue(Interface):
    """Where deferred work goes: a worker pool behind a broker, or the web process itself."""

    def enqueue(name, *args):
        """Send task ``name`` with ``args`` once the request's transaction commits; nothing
        is sent when it aborts. Raises ``ServiceUnavailable`` (503) when the queue cannot take
        work now, so that the request aborts with its state unchanged."""
