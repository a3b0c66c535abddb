"""One ``pypi-upload2 upload`` run over Upload 2.0: open a session per release, upload the
files, test-install, then publish or leave staged; on any failure or interruption, cancel
the sessions this run created (unless staging) and say what is left."""

from __future__ import annotations

import urllib.parse

from . import dists as dists_module, legacy, testinstall
from .api import Api, Cancelled, ProblemError, TransientError
from .progress import Reporter
from .upload import FileFailed, FileResult, NoUpload2, Options, Release, SessionExists, Uploader

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class Flow:
    """One ``upload`` run: sessions, files, test install, publish; and cleanup on failure."""

    def __init__(self, args, api: Api, reporter: Reporter, repository, public: str, report: dict):
        self.args, self.api, self.reporter, self.repository = args, api, reporter, repository
        self.public, self.report = public, report
        self.releases: list[Release] = []
        self.uploader = Uploader(api, reporter, Options(
            parallel=args.parallel, stage=args.stage, resumable=args.resumable,
            resumable_threshold=args.resumable_threshold, chunk_size=args.chunk_size, join=args.join))

    def run(self, dists) -> int:
        if self.args.protocol == "legacy":
            return self.run_legacy(dists, None)
        groups = dists_module.group(dists)
        self.releases = [Release(name, version, [FileResult(d) for d in files])
                         for (name, version), files in groups.items()]
        self.report["protocol"] = "2.0"
        self.reporter.info(f"Uploading {_count(len(dists), 'file')} of {_count(len(groups), 'release')} to "
                           f"{self.repository.url}")
        try:
            for release in self.releases:
                self.uploader.open_session(self.repository.url, release)
        except NoUpload2 as exc:
            if self.args.protocol == "2.0" or any(r.session for r in self.releases):
                return self.failed(["the repository has no Upload 2.0 endpoint", *exc.problem.lines()])
            if self.args.stage or self.args.test_install is not None:
                return self.failed(["the repository has no Upload 2.0 endpoint: --stage and --test-install "
                                    "need one", *exc.problem.lines()])
            self.releases = []
            return self.run_legacy(dists, exc.problem)
        except SessionExists as exc:
            return self.failed([str(exc), f"add to it with --join, or cancel it: pypi-upload2 session cancel "
                                f"{exc.location}"])
        except (ProblemError, TransientError) as exc:
            return self.failed(exc.lines() if isinstance(exc, ProblemError) else [str(exc)])
        if self.args.test_install is not None and not all(r.links.get("stage") for r in self.releases):
            return self.failed(["the index offers no stage preview, so --test-install cannot install from it"])

        self.reporter.add_files([(f.dist.filename, f.dist.size) for r in self.releases for f in r.files])
        self.uploader.upload_all(self.releases)
        failed = [f for r in self.releases for f in r.files if f.status != "completed"]
        if failed:
            total = sum(len(r.files) for r in self.releases)
            return self.failed([f"{len(failed)} of {_count(total, 'file')} failed: "
                                + ", ".join(f.dist.filename for f in failed)])
        self.reporter.stop()
        if self.args.test_install is not None and not self.test_install():
            return self.failed(["the test install failed; nothing was published"],
                               cancel=self.args.cancel_on_failure, shown=True)
        if self.args.stage:
            for release in self.releases:
                self.staged(release)
            return OK
        return self.publish()

    def test_install(self) -> bool:
        stages = [r.links["stage"] for r in self.releases]
        requirements = [f"{r.name}=={r.version}" for r in self.releases]
        modules = sorted({m for r in self.releases for f in r.files for m in dists_module.top_level_modules(f.dist)})
        if not modules and not self.args.test_install:
            modules = sorted({f.dist.name.replace("-", "_") for r in self.releases for f in r.files})
        self.reporter.info(f"Test install: {testinstall.pip_line(stages, self.public, requirements)}")
        check = testinstall.run(stages, self.public, requirements, self.args.test_install or None, modules)
        self.report["test-install"] = check
        if check.ok:
            self.reporter.info(f"Test install passed: {check.command}")
        else:
            tail = check.output.strip().splitlines()[-25:]
            self.reporter.error([f"test install failed: {check.command}", *tail])
        return check.ok

    def publish(self) -> int:
        for index, release in enumerate(self.releases):
            try:
                self.uploader.publish(release)
            except (ProblemError, TransientError, FileFailed) as exc:
                # A failed publish leaves the session editable (the PEP): keep it and the
                # ones not yet published staged, for a retry with ``session publish``.
                lines = exc.lines() if isinstance(exc, ProblemError) else str(exc).splitlines()
                self.reporter.error([f"{release.label}: publishing failed: {lines[0]}", *lines[1:]])
                for unpublished in self.releases[index:]:
                    self.staged(unpublished)
                self.report["error"] = f"publishing {release.label} failed"
                return FAILED
            project = urllib.parse.urljoin(self.public, f"{release.name}/")
            self.reporter.result(f"{release.label}: published {_count(len(release.files), 'file')} ({project})")
        return OK

    def staged(self, release: Release) -> None:
        url, stage = release.links["session"], release.links.get("stage")
        lines = [f"{release.label} is staged, not published:", f"  session: {url}"]
        if stage:
            pip = testinstall.pip_line([stage], self.public, [f"{release.name}=={release.version}"])
            lines += [f"  stage:   {stage}", f"  test:    {pip}"]
        lines += [f"  publish: pypi-upload2 session publish {url}", f"  cancel:  pypi-upload2 session cancel {url}"]
        self.reporter.result("\n".join(lines))

    def failed(self, lines: list[str], *, cancel: bool | None = None, shown: bool = False) -> int:
        """Report; cancel the sessions this run created (unless staging), else list them."""
        self.reporter.stop()
        if not shown:
            self.reporter.error(lines)
        self.report["error"] = lines[0]
        if cancel is None:
            cancel = not self.args.stage
        self.cleanup(cancel)
        return FAILED

    def cleanup(self, cancel: bool, api: Api | None = None) -> None:
        for release in self.releases:
            if release.session is None or release.status in ("published", "canceled"):
                continue
            if cancel and release.created:
                try:
                    self.uploader.cancel(release, api)
                    self.reporter.result(f"{release.label}: session canceled")
                except (ProblemError, TransientError, Cancelled) as exc:
                    self.reporter.error(f"{release.label}: could not cancel {release.links['session']}: "
                                        f"{str(exc).splitlines()[0]}")
            else:
                self.staged(release)

    def interrupted(self) -> int:
        """Ctrl+C: cancel the sessions this run created, unless staging (the PEP's advice)."""
        self.reporter.error("interrupted")
        self.report["error"] = "interrupted"
        cleanup = Api(self.repository.url, self.repository.credentials, retries=1, timeout=10)
        try:
            self.cleanup(cancel=not self.args.stage, api=cleanup)
        except KeyboardInterrupt:
            pass
        finally:
            cleanup.close()
        return INTERRUPTED

    def run_legacy(self, dists, problem: ProblemError | None) -> int:
        self.report["protocol"] = "legacy"
        if problem is None:
            self.reporter.info(f"Uploading {_count(len(dists), 'file')} to {self.repository.url} with the legacy API")
        else:
            self.reporter.warn(f"{self.repository.url} has no Upload 2.0 endpoint (session creation answered "
                               f"HTTP {problem.status}); uploading with the legacy API instead: one file at a "
                               "time, each published at once")
        self.reporter.add_files([(d.filename, d.size) for d in dists])
        results = legacy.upload(self.api, self.repository.url, dists, self.reporter)
        self.report["files"] = results
        if any(r.status != "published" for r in results):
            self.report["error"] = "legacy upload failed"
            return FAILED
        return OK
