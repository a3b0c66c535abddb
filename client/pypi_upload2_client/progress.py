"""What the user sees: on a terminal, a progress bar per file and one for the whole upload
(bytes, rate, ETA); otherwise plain lines, one per event, for CI logs. All methods are
called from the upload threads; rich's Progress and the line lock keep output whole."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)
from rich.filesize import decimal


PLAIN_PROGRESS_MIN = 8 * 1000 * 1000


def make_console(stream, *, force_terminal: bool | None = None) -> Console:
    # No markup or highlighting (filenames and URLs are data), no wrapping (URLs are copied).
    return Console(file=stream, markup=False, highlight=False, soft_wrap=True, force_terminal=force_terminal)


def size(n: int) -> str:
    return decimal(n)


class Reporter:
    """``bars``: live progress bars (a terminal); ``quiet``: only warnings, errors and results."""

    def __init__(self, console: Console, *, bars: bool, quiet: bool = False):
        self.console, self.quiet = console, quiet
        self.bars = bars and not quiet and console.is_terminal
        self.lock = threading.Lock()
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.done: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        self.quarters: dict[str, int] = {}
        self.total: TaskID | None = None

    def __enter__(self):
        if self.bars:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(bar_width=30), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[state]}"),
                console=self.console, refresh_per_second=8)
            self.progress.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _print(self, text: str, style: str | None = None) -> None:
        with self.lock:
            self.console.print(text, style=style)

    # -- messages ---------------------------------------------------------------------------

    def info(self, text: str) -> None:
        if not self.quiet:
            self._print(text)

    def result(self, text: str) -> None:
        """Shown even with --quiet: what the user must act on (stage URLs, outcomes)."""
        self._print(text)

    def warn(self, text: str) -> None:
        self._print(f"warning: {text}", style="yellow")

    def error(self, lines) -> None:
        lines = [lines] if isinstance(lines, str) else list(lines)
        if lines:
            self._print("error: " + "\n  ".join(lines), style="red")

    # -- files ------------------------------------------------------------------------------

    def add_files(self, files: list[tuple[str, int]]) -> None:
        """Register the files up front so the overall bar knows the total."""
        self.sizes.update(files)
        if self.progress is None:
            return
        self.total = self.progress.add_task("total", total=sum(n for _, n in files), state="")
        for filename, nbytes in files:
            self.tasks[filename] = self.progress.add_task(filename, total=nbytes, state="waiting")
            self.done[filename] = 0

    def state(self, filename: str, text: str, *, line: str | None = None) -> None:
        """A file's state changed; plain output prints ``line`` (or nothing)."""
        if self.progress is not None and filename in self.tasks:
            self.progress.update(self.tasks[filename], state=text)
        elif line:
            self.info(line)

    def advance(self, filename: str, nbytes: int) -> None:
        self.position(filename, self.done.get(filename, 0) + nbytes)

    def position(self, filename: str, offset: int) -> None:
        """The file's bytes sent so far (back to an offset on a restart or a resume)."""
        with self.lock:
            delta = offset - self.done.get(filename, 0)
            self.done[filename] = offset
        if self.progress is None or filename not in self.tasks:
            self._plain_progress(filename, offset)
            return
        self.progress.update(self.tasks[filename], completed=offset)
        if self.total is not None:
            self.progress.advance(self.total, delta)

    def _plain_progress(self, filename: str, offset: int) -> None:
        """Without bars, a line per quarter of a large file, so a CI log shows it moving."""
        total = self.sizes.get(filename, 0)
        if self.quiet or total < PLAIN_PROGRESS_MIN:
            return
        quarter = offset * 4 // total
        with self.lock:
            if quarter == self.quarters.get(filename, 0) or quarter == 0:
                self.quarters[filename] = quarter
                return
            self.quarters[filename] = quarter
        self._print(f"{filename}: {size(offset)} of {size(total)} sent")
