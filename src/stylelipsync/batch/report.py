"""What a batch tells its user: `Reporter` (the hooks, silent), `EchoReporter` (`generate --jobs`: a line
per job) and `BarReporter` (`stylelipsync batch`: bars over jobs and frames, a line per job)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from tqdm.auto import tqdm

from stylelipsync.batch.jobs import Job
from stylelipsync.batch.manifest import Outcome


@dataclass
class Summary:
    """The state of a batch after a run: what this run did and what earlier runs had recorded."""

    total: int
    done_now: int = 0
    failed_now: int = 0
    done_earlier: int = 0
    failed_earlier: int = 0
    manifest: Path | None = None

    @property
    def done(self) -> int:
        return self.done_now + self.done_earlier

    @property
    def failed(self) -> int:
        return self.failed_now + self.failed_earlier


class Reporter:
    """What a batch tells its user. This base class tells nothing (for tests and the Python API)."""

    pipeline_bars = False
    """True: let the local pipeline draw its own `tracking`/`dubbing` bars (as `generate --jobs` does)."""

    def begin(self, total: int, todo: Sequence[Job], earlier: Sequence[Outcome]) -> None:
        """Before the first job: `todo` will run, `earlier` are recorded as finished and skipped."""

    def progress(self, job: Job, done: int, total: int, pid: int) -> None:
        """`job` has `done` of `total` output frames written, in the worker process `pid`."""

    def retrying(self, job: Job, attempt: int, reason: str) -> None:
        """The worker running `job` died; the job runs again (`attempt` is the next one)."""

    def finished(self, job: Job, outcome: Outcome) -> None:
        """`job` ended (its outcome is already in the manifest)."""

    def end(self, summary: Summary) -> None:
        """After the last job."""


def _label(job: Job, total: int) -> str:
    return f"[{job.index}/{total}]" + (f" {job.output}" if job.output is not None else "")


def _done_lines(label: str, outcome: Outcome) -> list[str]:
    """A finished job's line (frames, faces, time, engine), then its warnings."""
    engine = f", {outcome.engine} engine" if outcome.engine else ""
    line = (
        f"{label}: done ({outcome.frames} frames, faces in {outcome.frames_with_face}, "
        f"{outcome.seconds:.1f} s{engine})"
    )
    return [line, *(f"{label}: warning: {text}" for text in outcome.warnings)]


class EchoReporter(Reporter):
    """`generate --jobs`: the pipeline's own bars, then one line per job and a count at the end."""

    pipeline_bars = True

    def __init__(self, debug: bool = False) -> None:
        self.debug = debug
        self.total = 0

    def begin(self, total: int, todo: Sequence[Job], earlier: Sequence[Outcome]) -> None:
        self.total = total

    def finished(self, job: Job, outcome: Outcome) -> None:
        label = _label(job, self.total)
        if outcome.ok:
            line, *warnings = _done_lines(label, outcome)
            click.echo(line)
            for text in warnings:
                click.secho(text, fg="yellow", err=True)
            return
        if outcome.internal and self.debug:
            click.echo(outcome.detail, err=True)
        hint = " (rerun with --debug)" if outcome.internal and not self.debug else ""
        click.secho(f"{label}: failed: {outcome.error}{hint}", fg="red", err=True)

    def end(self, summary: Summary) -> None:
        click.echo(f"{summary.done} of {summary.total} jobs done, {summary.failed} failed")


class BarReporter(EchoReporter):
    """`stylelipsync batch`: two bars (jobs, frames) over the whole batch, a line per finished job."""

    pipeline_bars = False

    def __init__(self, debug: bool = False) -> None:
        super().__init__(debug)
        self._jobs: Any = None
        self._frames: Any = None
        self._counts: dict[int, tuple[int, int]] = {}

    def begin(self, total: int, todo: Sequence[Job], earlier: Sequence[Outcome]) -> None:
        super().begin(total, todo, earlier)
        done = sum(o.ok for o in earlier)
        if earlier:
            click.echo(
                f"{len(earlier)} of {total} jobs already finished earlier ({done} done, "
                f"{len(earlier) - done} failed): skipped"
            )
        if todo:
            self._jobs = tqdm(total=len(todo), desc="jobs", unit="job", position=0, dynamic_ncols=True)
            self._frames = tqdm(total=0, desc="frames", unit="frame", position=1, dynamic_ncols=True)

    def progress(self, job: Job, done: int, total: int, pid: int) -> None:
        self._counts[job.index] = (done, total)
        self._update_frames()

    def retrying(self, job: Job, attempt: int, reason: str) -> None:
        self._counts.pop(job.index, None)
        self._update_frames()
        self._write(f"{_label(job, self.total)}: {reason}; running it again (attempt {attempt})", err=True)

    def finished(self, job: Job, outcome: Outcome) -> None:
        if outcome.ok:
            self._counts[job.index] = (outcome.frames, outcome.frames)
        else:
            self._counts.pop(job.index, None)
        self._update_frames()
        if self._jobs is not None:
            self._jobs.update(1)
        label = _label(job, self.total)
        if outcome.ok:
            line, *warnings = _done_lines(label, outcome)
            self._write(line)
            for text in warnings:
                self._write(click.style(text, fg="yellow"), err=True)
        else:
            if outcome.internal and self.debug:
                self._write(outcome.detail, err=True)
            hint = " (rerun with --debug)" if outcome.internal and not self.debug else ""
            self._write(click.style(f"{label}: failed: {outcome.error}{hint}", fg="red"), err=True)

    def end(self, summary: Summary) -> None:
        for bar in (self._frames, self._jobs):
            if bar is not None:
                bar.close()
        self._jobs = self._frames = None
        line = f"{summary.done} of {summary.total} jobs done, {summary.failed} failed"
        if summary.done_earlier or summary.failed_earlier:
            line += f" ({summary.done_now} done and {summary.failed_now} failed in this run)"
        click.echo(line)
        if summary.manifest is not None:
            click.echo(f"results: {summary.manifest}")
        if summary.failed_earlier:
            click.echo("jobs that failed in an earlier run were not run again; --retry-failed runs them")

    def _update_frames(self) -> None:
        if self._frames is None:
            return
        self._frames.total = sum(t for _, t in self._counts.values())
        self._frames.n = sum(d for d, _ in self._counts.values())
        self._frames.refresh()

    def _write(self, text: str, err: bool = False) -> None:
        if self._jobs is None:
            click.echo(text, err=err)
        else:
            tqdm.write(text, file=sys.stderr if err else sys.stdout)
