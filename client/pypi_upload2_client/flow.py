"""One ``pypi-upload2 upload`` run over Upload 2.0: open a session per release, upload the
files, test-install, then publish or leave staged; on any failure or interruption, cancel
the sessions this run created (unless staging) and say what is left."""

from __future__ import annotations

import urllib.parse

from . import dists as dists_module, groups, legacy, testinstall
from .api import Api, Cancelled, ProblemError, TransientError, problem_json
from .progress import Reporter
from .upload import (ENDED, PUBLISH_AFTER, FileFailed, FileResult, NoUpload2, Options, Release, SessionExists,
                     Uploader, WaitTimeout, seconds)

# TIMED_OUT: the index was still processing when --wait-timeout ran out; nothing failed.
OK, FAILED, USAGE, TIMED_OUT, INTERRUPTED = 0, 1, 2, 3, 130


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def resume_commands(label: str, url: str) -> str:
    """How to pick up a session the client stopped waiting for."""
    return "\n".join([f"{label} is not published yet:", f"  session: {url}",
                      f"  status:  pypi-upload2 session status {url}",
                      f"  resume:  pypi-upload2 session publish {url}   (waits, then publishes)"])


def _answer(problem: ProblemError) -> str:
    return f"HTTP {problem.status} ({problem.content_type or 'no content type'})"


def not_an_endpoint(url: str, answers: list[tuple[str, ProblemError]], needs_upload2: str = "") -> ProblemError:
    """A repository URL that answered as no upload endpoint would (``answers``: what was
    asked, and the answer), as one paragraph naming the URLs to use instead; with
    ``needs_upload2`` (what does), only the Upload 2.0 root will do."""
    root = urllib.parse.urljoin(url, "/")
    asked = " and ".join(f"{_answer(problem)} to {what}" for what, problem in answers)
    use = f"its Upload 2.0 root (e.g. {root}2.0/)"
    use += f"; {needs_upload2} Upload 2.0" if needs_upload2 else f" or its legacy upload endpoint (e.g. {root}legacy/)"
    paragraph = f"{url} is not an upload endpoint: it answered {asked}. Pass the index's upload URL instead: {use}."
    return ProblemError(answers[-1][1].status, "Not an upload endpoint", paragraph, url=url)


class Flow:
    """One ``upload`` run: sessions, files, test install, publish; and cleanup on failure."""

    def __init__(self, args, api: Api, reporter: Reporter, repository, public: str, report: dict):
        self.args, self.api, self.reporter, self.repository = args, api, reporter, repository
        self.public, self.report = public, report
        self.releases: list[Release] = []
        self.group: groups.Group | None = None
        self.uploader = Uploader(api, reporter, Options(
            parallel=args.parallel, stage=args.stage, resumable=args.resumable,
            resumable_threshold=args.resumable_threshold, chunk_size=args.chunk_size, join=args.join,
            wait_timeout=args.wait_timeout, publish_after=args.publish_after))

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
            problem, staging = exc.problem, self.args.stage or self.args.test_install is not None
            needs = "--protocol 2.0 needs" if self.args.protocol == "2.0" else "--stage and --test-install need"
            if (self.args.protocol == "2.0" or staging) and problem.status in legacy.NOT_AN_ENDPOINT:
                return self.not_an_endpoint([("an Upload 2.0 request", problem)], needs)
            if self.args.protocol == "2.0" or any(r.session for r in self.releases):
                return self.failed(["the repository has no Upload 2.0 endpoint", *problem.lines()], problem=problem)
            if staging:
                return self.failed(["the repository has no Upload 2.0 endpoint: --stage and --test-install "
                                    "need one", *problem.lines()], problem=problem)
            self.releases = []
            return self.run_legacy(dists, problem)
        except SessionExists as exc:
            return self.failed([str(exc), f"add to it with --join, or cancel it: pypi-upload2 session cancel "
                                f"{exc.location}"], problem=exc.problem)
        except (ProblemError, TransientError) as exc:
            return self.failed(problem=exc)
        if (refused := self.make_group()) is not None:
            return refused
        if self.args.test_install is not None and not all(r.links.get("stage") for r in self.releases):
            return self.failed(["the index offers no stage preview, so --test-install cannot install from it"])

        self.reporter.add_files([(f.dist.filename, f.dist.size) for r in self.releases for f in r.files])
        self.uploader.upload_all(self.releases)
        unfinished = [f for r in self.releases for f in r.files if f.status != "completed"]
        total = sum(len(r.files) for r in self.releases)
        if unfinished and all(f.status == "processing" for f in unfinished):
            return self.timed_out(f"{len(unfinished)} of {_count(total, 'file')} still processing after "
                                  f"{seconds(self.args.wait_timeout)} (--wait-timeout): "
                                  + ", ".join(f.dist.filename for f in unfinished) + "; nothing was published",
                                  self.releases)
        if unfinished:
            return self.failed([f"{len(unfinished)} of {_count(total, 'file')} failed: "
                                + ", ".join(f.dist.filename for f in unfinished)], files=unfinished)
        self.reporter.stop()
        if self.args.test_install is not None and not self.test_install():
            return self.failed(["the test install failed; nothing was published"],
                               cancel=self.args.cancel_on_failure, shown=True)
        if self.args.stage:
            self.show_staged()
            return OK
        return self.publish_group() if self.group else self.publish()

    def make_group(self) -> int | None:
        """Join the sessions in a release group, the index's extension: asked for with
        --group, and automatic for several projects (one release each) unless --no-group.
        Without the extension, the releases publish one by one (an error with --group)."""
        several = len({r.name for r in self.releases}) == len(self.releases) > 1
        if self.args.group is False or (self.args.group is None and not several):
            return None
        if not several:
            return self.failed(["--group needs one release of each of several projects"])
        try:
            self.group = groups.create(self.api, self.repository.url, self.releases)
        except groups.NoGroups as exc:
            if self.args.group:
                return self.failed([str(exc)])
            self.reporter.warn(f"{exc}: each release is published on its own")
            return None
        except (ProblemError, TransientError) as exc:
            return self.failed(problem=exc)
        self.reporter.info(f"release group {self.group.url}: " + ", ".join(r.label for r in self.releases))
        return None

    def test_install(self) -> bool:
        stages = [self.group.stage] if self.group else [r.links["stage"] for r in self.releases]
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
            except WaitTimeout as exc:
                return self.timed_out(f"{exc}; the index has not finished publishing it", self.releases[index:])
            except (ProblemError, TransientError, FileFailed) as exc:
                # A failed publish leaves the session editable (the PEP): keep it and the
                # ones not yet published staged, for a retry with ``session publish``.
                reason = exc.reason if isinstance(exc, FileFailed) else exc
                first, *rest = _lines(reason)
                lines = [f"{release.label}: publishing failed: {first}", *rest]
                self.reporter.error(lines)
                for unpublished in self.releases[index:]:
                    self.staged(unpublished)
                self.report["error"] = problem_json(reason if isinstance(reason, ProblemError) else lines)
                return FAILED
            project = urllib.parse.urljoin(self.public, f"{release.name}/")
            if when := release.session.get(PUBLISH_AFTER):
                self.reporter.result(f"{release.label}: scheduled to publish {_count(len(release.files), 'file')} "
                                     f"at {when} ({project}); before then: pypi-upload2 session unschedule "
                                     f"{release.links['session']}")
                continue
            self.reporter.result(f"{release.label}: published {_count(len(release.files), 'file')} ({project})")
        return OK

    def publish_group(self) -> int:
        """Every release at once, or none: the group's one publish."""
        try:
            for release in self.releases:
                self.uploader.wait_for_files(release)
            groups.publish(self.uploader, self.group)
        except WaitTimeout as exc:
            return self.timed_out(f"{exc}; the index has not finished publishing it",
                                  [groups.resume_commands(self.group.url)])
        except (ProblemError, TransientError, FileFailed) as exc:
            reason = exc.reason if isinstance(exc, FileFailed) else exc
            first, *rest = _lines(reason)
            lines = [f"the release group: publishing failed: {first}", *rest, "nothing of it was published"]
            self.reporter.error(lines)
            self.show_staged()
            self.report["error"] = problem_json(reason if isinstance(reason, ProblemError) else lines)
            return FAILED
        when = self.group.body.get(PUBLISH_AFTER)
        for release in self.releases:
            self.uploader.refresh(release)
            project = urllib.parse.urljoin(self.public, f"{release.name}/")
            done = f"scheduled to publish at {when}" if when else "published"
            self.reporter.result(f"{release.label}: {done} {_count(len(release.files), 'file')} ({project})")
        if when:
            self.reporter.result(f"before then: pypi-upload2 group status {self.group.url}")
        return OK

    def show_staged(self) -> None:
        """What is left staged: the group (its own commands), or each release."""
        if self.group is None or self.group.status in ENDED:
            for release in self.releases:
                self.staged(release)
            return
        url, stage = self.group.url, self.group.stage
        lines = ["the release group is staged, not published: "
                 + ", ".join(r.label for r in self.releases), f"  group:   {url}"]
        if stage:
            pip = testinstall.pip_line([stage], self.public, [f"{r.name}=={r.version}" for r in self.releases])
            lines += [f"  stage:   {stage}", f"  test:    {pip}"]
        lines += [f"  publish: pypi-upload2 group publish {url}", f"  cancel:  pypi-upload2 group cancel {url}"]
        self.reporter.result("\n".join(lines))

    def staged(self, release: Release) -> None:
        url, stage = release.links["session"], release.links.get("stage")
        lines = [f"{release.label} is staged, not published:", f"  session: {url}"]
        if stage:
            pip = testinstall.pip_line([stage], self.public, [f"{release.name}=={release.version}"])
            lines += [f"  stage:   {stage}", f"  test:    {pip}"]
        lines += [f"  publish: pypi-upload2 session publish {url}", f"  cancel:  pypi-upload2 session cancel {url}"]
        self.reporter.result("\n".join(lines))

    def timed_out(self, message: str, releases: list[Release] | list[str]) -> int:
        """``--wait-timeout`` ran out: keep the sessions and say how to pick them up (or
        ``releases`` are those lines already)."""
        self.reporter.stop()
        self.reporter.error(message)
        blocks = [r if isinstance(r, str) else resume_commands(r.label, r.links["session"]) for r in releases]
        for block in blocks:
            self.reporter.result(block)
        self.report["error"], self.report["timed-out"] = problem_json([message, *blocks]), True
        return TIMED_OUT

    def failed(self, lines: list[str] | None = None, *, problem: ProblemError | TransientError | None = None,
               files=(), cancel: bool | None = None, shown: bool = False) -> int:
        """Report (``problem``: the server's, shown whole in --json; ``files``: the failed
        ones, each an entry of its ``errors``); cancel the sessions this run created (unless
        staging), else list them."""
        self.reporter.stop()
        lines = lines or _lines(problem)
        if not shown:
            self.reporter.error(lines)
        error = problem_json(problem if isinstance(problem, ProblemError) else lines)
        error["errors"] = error["errors"] or [
            {"source": f.dist.filename, "message": " ".join(_lines(f.error or f.status)[:2])} for f in files]
        self.report["error"] = error
        if cancel is None:
            cancel = not self.args.stage
        self.cleanup(cancel)
        return FAILED

    def cleanup(self, cancel: bool, api: Api | None = None) -> None:
        if not cancel and self.group is not None and self.group.status not in ENDED:
            self.show_staged()
            return
        for release in self.releases:
            if release.session is None or release.status in ENDED:
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
        if (cancel and self.group is not None and self.group.created and self.group.status not in ENDED
                and all(r.created for r in self.releases)):
            try:  # emptied by the cancels above
                groups.cancel(api or self.api, self.group)
                self.reporter.result("the release group: canceled")
            except (ProblemError, TransientError, Cancelled) as exc:
                self.reporter.error(f"could not cancel the release group {self.group.url}: {str(exc).splitlines()[0]}")

    def interrupted(self) -> int:
        """Ctrl+C: cancel the sessions this run created, unless staging (the PEP's advice)."""
        self.reporter.error("interrupted")
        self.report["error"] = problem_json("interrupted")
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
        try:
            results = legacy.upload(self.api, self.repository.url, dists, self.reporter)
        except legacy.NoLegacy as exc:
            self.report["files"] = exc.results
            answers = [("an Upload 2.0 request", problem)] if problem is not None else []
            return self.not_an_endpoint([*answers, ("a legacy upload", exc.problem)])
        self.report["files"] = results
        failed = [r for r in results if r.status == "error"]
        if failed:  # each file's error is shown already
            return self.failed([f"legacy upload failed: {failed[0].dist.filename}"], files=failed, shown=True)
        return OK

    def not_an_endpoint(self, answers: list[tuple[str, ProblemError]], needs_upload2: str = "") -> int:
        problem = not_an_endpoint(self.repository.url, answers, needs_upload2)
        return self.failed([problem.detail], problem=problem)


def _lines(error) -> list[str]:
    return error.lines() if isinstance(error, ProblemError) else str(error).splitlines()
