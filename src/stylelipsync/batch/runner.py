"""Run the jobs of a batch: one after another with a pipeline loaded here, or on a pool of Ray actors.

`run_batch` is the one loop both use (and `generate --jobs`): it skips the jobs the results manifest
records as finished, hands the rest to a backend, and records and reports every outcome as it arrives.

- `LocalBackend` runs the jobs in this process with one loaded pipeline (`jobrun.run_job`).
- `RayBackend` sends them to a `remote.ray_pool.RayPool`: `--workers` actors (`DubbingWorker`), each holding
  one loaded pipeline and running one job at a time, with at most two jobs queued per actor (backpressure: a
  huge CSV is never all in flight, and an actor never waits for its next job). An actor whose process dies
  (killed, out of memory, a lost node) is restarted by Ray (`max_restarts=-1`, the model reloaded) and the
  job it was running is retried up to `retries` times; the jobs merely queued behind it are sent again
  without counting an attempt. A job that fails on its own input (`StyleLipSyncError`) is reported and not
  retried.

A job's output is written to a temporary file beside it and renamed only when complete (`VideoWriter`); the
temporary file of a job whose worker was killed is deleted before the job runs again.

Ray is imported only by `RayBackend`, when it runs.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from stylelipsync.batch.jobs import Job
from stylelipsync.batch.manifest import DONE, FAILED, Manifest, Outcome
from stylelipsync.batch.report import Reporter, Summary
from stylelipsync.jobrun import DubbingPipeline, JobRun, call_outputs, remove_partials, run_job
from stylelipsync.remote.ray_pool import RayPool, death_reason, import_ray, worker_lost_errors

if TYPE_CHECKING:
    from stylelipsync.pipelines.plan import Progress

JOBS_PER_WORKER = 2
"""Jobs in flight per Ray actor: the running one and the next, so an actor never idles between jobs."""


# ----------------------------------------------------------------------------------------------- one job


def job_outcome(job: Job, run: JobRun) -> Outcome:
    """A job's outcome from how its pipeline call ended."""
    if run.result is not None:
        result = run.result
        return Outcome(
            job.key,
            DONE,
            seconds=result.seconds,
            frames=result.frames,
            frames_with_face=result.frames_with_face,
            engine=result.engine,
            warnings=list(result.warnings),
        )
    if run.internal:
        return Outcome(
            job.key,
            FAILED,
            seconds=run.seconds,
            error=f"internal error: {run.error_repr}",
            internal=True,
            detail=run.detail,
        )
    return Outcome(job.key, FAILED, seconds=run.seconds, error=run.error)


def job_paths(job: Job) -> tuple[Path, Path, Path] | None:
    """The job's video, audio and output; None if its row has a problem (then it fails without running)."""
    if job.problem is not None or job.video is None or job.audio is None or job.output is None:
        return None
    return job.video, job.audio, job.output


def refused(job: Job) -> Outcome:
    """The outcome of a job whose row has a problem: failed without running."""
    return Outcome(job.key, FAILED, error=str(job.problem))


def job_outputs(job: Job) -> list[Path]:
    """The files a job writes: its output and, if asked for, its face crops."""
    return call_outputs(job.output, job.options)


# ----------------------------------------------------------------------------------------------- the loop


Settle = Callable[[Job, Outcome], None]
"""Called by a backend with each job and its outcome as soon as the job ends (records and reports it)."""


class Backend(Protocol):
    """Runs jobs, handing each outcome to `settle` as it comes (in any order)."""

    def run(self, jobs: Sequence[Job], reporter: Reporter, settle: Settle) -> None: ...


def split_finished(
    jobs: Sequence[Job], previous: dict[str, Outcome], retry_failed: bool = False
) -> tuple[list[Job], list[Outcome]]:
    """The jobs still to run, and the recorded outcomes of those that are not: done (with the output still
    there) or, unless `retry_failed`, failed."""
    todo: list[Job] = []
    earlier: list[Outcome] = []
    for job in jobs:
        prev = previous.get(job.key)
        output_there = job.output is not None and job.output.exists()
        if prev is not None and (output_there if prev.ok else not retry_failed):
            earlier.append(prev)
        else:
            todo.append(job)
    return todo, earlier


def run_batch(
    jobs: Sequence[Job],
    backend: Callable[[Sequence[Job]], AbstractContextManager[Backend]],
    reporter: Reporter | None = None,
    manifest: Manifest | None = None,
    retry_failed: bool = False,
) -> Summary:
    """Run the jobs a manifest does not record as finished; record and report each outcome as it comes.

    `backend(todo)` opens the backend (loads the model, connects to Ray); it is not called when there is
    nothing to do. Without a manifest every job runs and nothing is recorded (`generate --jobs`).
    """
    reporter = reporter or Reporter()
    previous = manifest.previous if manifest is not None else {}
    todo, earlier = split_finished(jobs, previous, retry_failed)
    summary = Summary(
        total=len(jobs),
        done_earlier=sum(o.ok for o in earlier),
        failed_earlier=sum(not o.ok for o in earlier),
        manifest=manifest.path if manifest is not None else None,
    )

    def settle(job: Job, outcome: Outcome) -> None:
        if manifest is not None:
            manifest.record(outcome)
        if outcome.ok:
            summary.done_now += 1
        else:
            summary.failed_now += 1
        reporter.finished(job, outcome)

    reporter.begin(len(jobs), todo, earlier)
    try:
        if todo:
            if manifest is not None:
                for job in todo:
                    remove_partials(job_outputs(job))
            with backend(todo) as runner:
                runner.run(todo, reporter, settle)
    finally:
        reporter.end(summary)
    return summary


class LocalBackend:
    """Runs the jobs one after another in this process with one loaded pipeline."""

    def __init__(self, pipe: DubbingPipeline) -> None:
        self.pipe = pipe

    def run(self, jobs: Sequence[Job], reporter: Reporter, settle: Settle) -> None:
        pid = os.getpid()
        for job in jobs:
            paths = job_paths(job)
            if paths is None:
                settle(job, refused(job))
                continue
            progress: Progress = True
            if not reporter.pipeline_bars:

                def progress(done: int, total: int, job: Job = job) -> None:
                    reporter.progress(job, done, total, pid)

            run = run_job(self.pipe, *paths, job.options, progress)
            settle(job, job_outcome(job, run))


# ----------------------------------------------------------------------------------------------- Ray


class RayBackend:
    """Runs jobs on a started `RayPool`, with backpressure, retries after worker deaths, and progress."""

    def __init__(self, pool: RayPool, retries: int = 2, poll_seconds: float = 0.5) -> None:
        self.pool, self.retries, self.poll_seconds = pool, retries, poll_seconds

    def run(self, jobs: Sequence[Job], reporter: Reporter, settle: Settle) -> None:
        _RayRun(self, jobs, reporter, settle).run()


class _RayRun:
    """The state of one `RayBackend.run`: the queue, the jobs in flight per worker, attempts, and which
    workers are up. A worker is sent jobs only once it has answered a `ready()` ping: at the start, and
    after each restart (a job sent to an actor that is restarting fails at once, without running)."""

    def __init__(self, backend: RayBackend, jobs: Sequence[Job], reporter: Reporter, settle: Settle) -> None:
        self.ray = import_ray()
        self.pool, self.retries, self.poll = backend.pool, backend.retries, backend.poll_seconds
        self.pool.revive()
        self.reporter, self._settle_outcome = reporter, settle
        self.original = {job.index: job for job in jobs}
        self.queue: deque[Job] = deque(job.absolute() for job in jobs)
        self.slots: list[deque[Any]] = [deque() for _ in self.pool.actors]
        self.inflight: dict[Any, tuple[int, Job]] = {}
        self.attempts: dict[int, int] = {}
        self.preexisting: dict[int, bool] = {}
        self.lost = worker_lost_errors()
        self.pings: dict[Any, int] = {}
        self.down: dict[int, float] = dict.fromkeys(range(len(self.slots)), 0.0)
        """slot → when to ping it (again); a slot is in here until it has answered a ping."""
        self.gone: set[int] = set()
        self._seen: dict[int, tuple[int, int]] = {}

    def run(self) -> None:
        finished = False
        try:
            next_poll = time.monotonic()
            while self.queue or self.inflight:
                if len(self.gone) == len(self.slots):
                    self._no_workers_left()
                    break
                self._ping_due()
                self._fill()
                waiting = [*self.inflight, *self.pings]
                if not waiting:
                    time.sleep(self.poll)
                    continue
                ready, _ = self.ray.wait(waiting, num_returns=1, timeout=self.poll)
                for ref in ready:
                    if ref in self.pings:
                        self._settle_ping(ref)
                    else:
                        self._settle(ref)
                if time.monotonic() >= next_poll:
                    self._report_progress()
                    next_poll = time.monotonic() + self.poll
            finished = True
        finally:
            if not finished:
                self._abandon()

    def _done(self, job: Job, outcome: Outcome) -> None:
        outcome.attempts = max(outcome.attempts, self.attempts.get(job.index, 0))
        self._settle_outcome(self.original[job.index], outcome)

    def _ping_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self.down.items()):
            if when <= now and slot not in self.pings.values():
                self.pings[self.pool.actors[slot].ready.remote()] = slot
                self.down[slot] = float("inf")

    def _settle_ping(self, ref: Any) -> None:
        """A worker answered (it is up), is still restarting (ask again soon) or is gone for good."""
        slot = self.pings.pop(ref)
        try:
            pid, _ = self.ray.get(ref)
        except self.ray.exceptions.ActorDiedError:
            self.down.pop(slot, None)
            self.gone.add(slot)
        except self.lost:
            self.down[slot] = time.monotonic() + self.poll
        else:
            self.down.pop(slot, None)
            self.pool.pids[slot] = pid

    def _fill(self) -> None:
        """Give every worker that is up jobs, up to `JOBS_PER_WORKER` in flight."""
        for slot, refs in enumerate(self.slots):
            if slot in self.down or slot in self.gone:
                continue
            while self.queue and len(refs) < JOBS_PER_WORKER:
                job = self.queue.popleft()
                self.attempts[job.index] = self.attempts.get(job.index, 0) + 1
                paths = job_paths(job)
                if paths is None:
                    self._done(job, refused(job))
                    continue
                if job.index not in self.preexisting:
                    self.preexisting[job.index] = _outputs_exist(job)
                ref = self.pool.actors[slot].run.remote(*map(str, paths), job.options, job.index)
                refs.append(ref)
                self.inflight[ref] = (slot, job)

    def _settle(self, ref: Any) -> None:
        """A finished task: its outcome, or, if its worker died, the retry or failure of its jobs."""
        if ref not in self.inflight:
            return
        slot, job = self.inflight[ref]
        try:
            outcome = job_outcome(job, self.ray.get(ref))
        except self.lost as exc:
            self._worker_died(slot, exc)
            return
        except self.ray.exceptions.RayError as exc:
            outcome = Outcome(job.key, FAILED, error=f"internal error: {exc}", internal=True, detail=str(exc))
        del self.inflight[ref]
        self.slots[slot].remove(ref)
        self._done(job, outcome)

    def _worker_died(self, slot: int, exc: BaseException) -> None:
        """The worker of `slot` died: the job it was running (its oldest unfinished one: an actor runs its
        jobs in order) is retried or failed; the jobs queued behind it go back to the queue uncounted."""
        refs, self.slots[slot] = list(self.slots[slot]), deque()
        self.down[slot] = time.monotonic() + self.poll
        victims: list[Job] = []
        for ref in refs:
            _, job = self.inflight.pop(ref)
            outcome = self._result_if_any(ref, job)
            if outcome is None:
                victims.append(job)
            else:
                self._done(job, outcome)
        if not victims:
            return
        running, queued = victims[0], victims[1:]
        for job in reversed(queued):
            self.attempts[job.index] -= 1
            self.queue.appendleft(job)
        remove_partials(job_outputs(running))
        reason = death_reason(exc)
        attempts = self.attempts[running.index]
        if attempts <= self.retries:
            self.queue.appendleft(self._for_retry(running))
            self.reporter.retrying(self.original[running.index], attempts + 1, reason)
            return
        self._done(
            running,
            Outcome(
                running.key,
                FAILED,
                error=f"{reason} on each of its {attempts} attempt(s); giving up (--retries {self.retries}). "
                "If it ran out of memory, give the workers more memory or split the video",
            ),
        )

    def _result_if_any(self, ref: Any, job: Job) -> Outcome | None:
        """The outcome of a task that completed before its worker died; None (and the task cancelled) if
        it did not."""
        finished, _ = self.ray.wait([ref], timeout=0)
        if not finished:
            with suppress(Exception):
                self.ray.cancel(ref)
            return None
        try:
            run: JobRun = self.ray.get(ref)
        except self.ray.exceptions.RayError:
            return None
        return job_outcome(job, run)

    def _no_workers_left(self) -> None:
        """Every worker is gone for good (Ray will not restart them): the remaining jobs fail."""
        while self.queue:
            job = self.queue.popleft()
            self._done(
                job,
                Outcome(
                    job.key,
                    FAILED,
                    error="every Ray worker is gone and Ray will not restart them (see the Ray dashboard); "
                    "run the batch again to resume",
                    attempts=0,
                ),
            )

    def _for_retry(self, job: Job) -> Job:
        """A job to run again: if the killed attempt had already put its output in place, replace it."""
        if job.options is None or self.preexisting.get(job.index, True) or not _outputs_exist(job):
            return job
        return replace(job, options=replace(job.options, overwrite=True))

    def _report_progress(self) -> None:
        try:
            state = self.pool.snapshot()
        except Exception:
            return
        by_index = {job.index: job for _, job in self.inflight.values()}
        for pid, tag, done, total in state.values():
            job = by_index.get(tag)
            if job is None or total <= 0 or self._seen.get(job.index) == (done, total):
                continue
            self._seen[job.index] = (done, total)
            self.reporter.progress(self.original[job.index], done, total, pid)

    def _abandon(self) -> None:
        """Interrupted: stop the running jobs (killing their workers; `revive` replaces them if the pool is
        used again); record those that had finished
        meanwhile, and delete what the others left (partial files, an output that appeared during the
        killed attempt), so that a later run starts them afresh."""
        busy = [slot for slot, refs in enumerate(self.slots) if refs]
        inflight, self.inflight = list(self.inflight.items()), {}
        self.slots = [deque() for _ in self.slots]
        if not busy:
            return
        with suppress(Exception):
            self.pool.stop(busy)
            self.ray.wait([ref for ref, _ in inflight], num_returns=len(inflight), timeout=30)
        for ref, (_, job) in inflight:
            outcome = self._result_if_any(ref, job)
            if outcome is not None:
                with suppress(Exception):
                    self._done(job, outcome)
                continue
            remove_partials(job_outputs(job))
            if not self.preexisting.get(job.index, True):
                for path in job_outputs(job):
                    path.unlink(missing_ok=True)


def _outputs_exist(job: Job) -> bool:
    return any(p.exists() for p in job_outputs(job))
