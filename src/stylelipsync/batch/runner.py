"""Run the jobs of a batch: one after another with a pipeline loaded here, or on a pool of Ray actors.

`run_batch` is the one loop both use (and `generate --jobs`): it skips the jobs the results manifest
records as finished, hands the rest to a backend, and records and reports every outcome as it arrives.

- `LocalBackend` runs the jobs in this process with one loaded `LipSyncPipeline`.
- `RayBackend` sends them to a `RayPool`: `--workers` actors (`DubbingWorker`), each holding one loaded
  pipeline and running one job at a time, with at most two jobs queued per actor (backpressure: a huge CSV
  is never all in flight, and an actor never waits for its next job). An actor whose process dies (killed,
  out of memory, a lost node) is restarted by Ray (`max_restarts=-1`, the model reloaded) and the job it
  was running is retried up to `retries` times; the jobs merely queued behind it are sent again without
  counting an attempt. A job that fails on its own input (`StyleLipSyncError`) is reported and not retried.

A job's output is written to a temporary file beside it and renamed only when complete (`VideoWriter`); the
temporary file of a job whose worker was killed is deleted before the job runs again.

Ray is imported only here, and only when a Ray backend is built.
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from stylelipsync.batch.jobs import Job
from stylelipsync.batch.manifest import DONE, FAILED, Manifest, Outcome
from stylelipsync.batch.report import Reporter, Summary
from stylelipsync.errors import CheckpointError, StyleLipSyncError

JOBS_PER_WORKER = 2
"""Jobs in flight per Ray actor: the running one and the next, so an actor never idles between jobs."""
PROGRESS_SECONDS = 0.25
"""How often a worker reports the frames done of its job (and the last chunk always)."""
WORKER_ENV = {"RAY_worker_niceness": "0"}
"""Environment of the worker processes. Ray makes its workers 15 nice levels nicer than its own processes
(`worker_niceness`) so that its daemons win the CPU; a dubbing worker is the job itself, and there it lost
the CPU to anything else running (Ray's daemons, the driver, other users): 6.7 % slower per job than
`generate` on the same 2 cores. With 0 it keeps the priority Ray was started with and competes like the local
run does. The core worker reads this variable as it starts, before any user code."""


# ----------------------------------------------------------------------------------------------- one job


def run_job(pipe: Any, job: Job, progress: Any = False) -> Outcome:
    """Run one job with a loaded pipeline. Every failure becomes a failed `Outcome`, never an exception
    (Ctrl-C still interrupts)."""
    if job.problem is not None:
        return Outcome(job.key, FAILED, error=job.problem)
    start = time.perf_counter()
    try:
        result = pipe(job.video, job.audio, job.output, options=job.options, progress=progress)
    except StyleLipSyncError as exc:
        return Outcome(job.key, FAILED, seconds=time.perf_counter() - start, error=str(exc))
    except Exception as exc:  # a bug in one job must not lose the others
        return Outcome(
            job.key,
            FAILED,
            seconds=time.perf_counter() - start,
            error=f"internal error: {exc!r}",
            internal=True,
            detail=traceback.format_exc(),
        )
    return Outcome(
        job.key,
        DONE,
        seconds=result.seconds,
        frames=result.frames,
        frames_with_face=result.frames_with_face,
        engine=result.engine,
        warnings=list(result.warnings),
    )


_PARTIAL = re.compile(r"\.[0-9a-f]{8}\.part")


def remove_partials(job: Job) -> None:
    """Delete the temporary files a killed run of `job` left beside its outputs.

    `VideoWriter` writes `.<stem>.<8 hex digits>.part<suffix>` beside the output and renames it when done;
    a process killed mid-job (SIGKILL, out of memory) leaves it behind.
    """
    for output in _outputs(job):
        prefix = f".{output.stem}."
        with suppress(OSError):
            for entry in output.parent.iterdir():
                name = entry.name
                if (
                    name.startswith(prefix)
                    and name.endswith(output.suffix)
                    and _PARTIAL.fullmatch(name[len(prefix) - 1 : len(name) - len(output.suffix)])
                ):
                    entry.unlink(missing_ok=True)


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
                    remove_partials(job)
            with backend(todo) as runner:
                runner.run(todo, reporter, settle)
    finally:
        reporter.end(summary)
    return summary


class LocalBackend:
    """Runs the jobs one after another in this process with one loaded pipeline."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def run(self, jobs: Sequence[Job], reporter: Reporter, settle: Settle) -> None:
        pid = os.getpid()
        for job in jobs:
            progress: Any = True
            if not reporter.pipeline_bars:

                def progress(done: int, total: int, job: Job = job) -> None:
                    reporter.progress(job, done, total, pid)

            settle(job, run_job(self.pipe, job, progress))


# ----------------------------------------------------------------------------------------------- Ray


def import_ray() -> Any:
    """The `ray` module, or a user error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise StyleLipSyncError(
            "--ray needs Ray, which is not installed here: pip install 'stylelipsync[ray]' "
            "(on every node of the cluster too)"
        ) from exc
    return ray


def connect_ray(address: str, debug: bool = False, start_local: bool = True) -> Any:
    """Connect this process to a Ray cluster; returns the `ray.init` context.

    `address`: "auto" joins the cluster this machine belongs to (`RAY_ADDRESS`, or one started here with
    `ray start`), else (if `start_local`) starts a local Ray instance; otherwise a head node's `HOST:PORT` or
    a `ray://HOST:10001` client address.
    """
    import logging

    ray = import_ray()
    try:
        return ray.init(
            address=None if address == "auto" and start_local else address,
            logging_level=logging.INFO if debug else logging.WARNING,
            log_to_driver=debug,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise StyleLipSyncError(
            f"cannot connect to the Ray cluster at {address} ({exc}); start one with `ray start --head` and "
            "pass its address, or use --ray auto for a local one"
        ) from exc


@contextmanager
def ray_connection(address: str, debug: bool = False) -> Iterator[Any]:
    """`connect_ray` for the duration of the block, unless this process is connected already (then the
    block gets None). Leaving the block disconnects, which also stops a local instance started here."""
    ray = import_ray()
    if ray.is_initialized():
        yield None
        return
    context = connect_ray(address, debug)
    try:
        yield context
    finally:
        ray.shutdown()


def default_workers(cpus_per_worker: float, gpus_per_worker: float) -> int:
    """As many workers as the connected cluster has room for (CPUs, and GPUs when they are asked for)."""
    resources = import_ray().cluster_resources()
    count = int(resources.get("CPU", 0) // max(cpus_per_worker, 1e-9))
    if gpus_per_worker > 0:
        count = min(count, int(resources.get("GPU", 0) // gpus_per_worker))
    return max(1, count)


class ProgressHub:
    """A small Ray actor: the workers post the progress of their current job here; the driver reads it."""

    def __init__(self) -> None:
        self.state: dict[int, tuple[int, Any, int, int]] = {}

    def update(self, slot: int, pid: int, job: Any, done: int, total: int) -> None:
        self.state[slot] = (pid, job, done, total)

    def snapshot(self) -> dict[int, tuple[int, Any, int, int]]:
        return dict(self.state)


class DubbingWorker:
    """A Ray actor holding one loaded pipeline; runs the jobs sent to it one at a time, in order.

    `engine` is the pipeline's default engine (`LipSyncPipeline.from_pretrained`); a job's own
    `options.engine` picks the engine of that job, the other one being loaded on first use.

    A model that cannot be loaded is not raised here (Ray would keep restarting the actor): `ready()`
    returns the message, and every job sent to it fails with it. The progress hub is found by name, so that
    the constructor's arguments are plain values that a restart can always reuse.
    """

    def __init__(
        self,
        slot: int,
        hub: str,
        checkpoint: str | None,
        w_avg: str | None,
        device: str,
        threads: int,
        engine: str | None = None,
    ) -> None:
        if "torch" not in sys.modules:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        torch.set_num_threads(max(1, threads))
        import ray

        from stylelipsync.pipelines import LipSyncPipeline

        self.slot, self.hub, self.pid = slot, ray.get_actor(hub), os.getpid()
        self.pipe: Any = None
        self.error: str | None = None
        try:
            self.pipe = LipSyncPipeline.from_pretrained(checkpoint, w_avg=w_avg, device=device, engine=engine)
        except StyleLipSyncError as exc:
            self.error = str(exc)
        self.hub.update.remote(slot, self.pid, None, 0, 0)

    def ready(self) -> tuple[int, str | None]:
        """(process id, the model's load error or None)."""
        return self.pid, self.error

    def niceness(self) -> int:
        """The worker process's niceness: that of the node's Ray processes (see `WORKER_ENV`)."""
        return os.nice(0)

    def run(self, job: Job) -> Outcome:
        """Run one job of a batch, posting its progress to the hub."""
        if self.pipe is None:
            return Outcome(job.key, FAILED, error=str(self.error))
        return run_job(self.pipe, job, self._progress(job.index))

    def generate(self, video: str, audio: str, output: str, options: Any, tag: Any) -> Any:
        """One pipeline call for `RemotePipeline`: returns the `GenerateResult`, raises its errors."""
        if self.pipe is None:
            raise CheckpointError(str(self.error))
        return self.pipe(video, audio, output, options=options, progress=self._progress(tag))

    def _progress(self, tag: Any) -> Callable[[int, int], None]:
        self.hub.update.remote(self.slot, self.pid, tag, 0, 0)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done < total and now - last[0] < PROGRESS_SECONDS:
                return
            last[0] = now
            self.hub.update.remote(self.slot, self.pid, tag, done, total)

        return progress


class RayPool:
    """`workers` `DubbingWorker` actors on the connected Ray cluster, and their progress hub.

    Paths (checkpoint, inputs, outputs) must be valid on every node: a shared file system mounted at the
    same place everywhere. `engine` is the workers' default engine (None: bank without a checkpoint,
    stylelipsync with one); each job's `options.engine` still chooses its own.
    """

    def __init__(
        self,
        workers: int,
        checkpoint: str | Path | None = None,
        w_avg: str | Path | None = None,
        device: str = "auto",
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float = 0.0,
        engine: str | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.checkpoint = os.path.abspath(checkpoint) if checkpoint is not None else None
        self.w_avg = os.path.abspath(w_avg) if w_avg is not None else None
        self.device = device
        self.engine = engine
        self.cpus_per_worker, self.gpus_per_worker = cpus_per_worker, gpus_per_worker
        self.actors: list[Any] = []
        self.pids: list[int] = []
        self.hub: Any = None
        self.hub_name = ""

    def start(self, timeout: float = 600.0) -> RayPool:
        """Start the actors and wait until every one has loaded the model."""
        ray = import_ray()
        self.hub_name = f"stylelipsync-progress-{os.getpid()}-{time.monotonic_ns()}"
        self.hub = ray.remote(num_cpus=0)(ProgressHub).options(name=self.hub_name).remote()
        self.actors = [self._actor(slot) for slot in range(self.workers)]
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def wait_ready(self, timeout: float = 600.0) -> list[int]:
        """Wait until every worker has loaded the model (asking again while one restarts); their pids.

        Raises `CheckpointError` if the model cannot be loaded, `StyleLipSyncError` after `timeout`.
        """
        ray = import_ray()
        deadline = time.monotonic() + timeout
        answers: dict[int, tuple[int, str | None]] = {}
        while len(answers) < len(self.actors):
            if time.monotonic() > deadline:
                raise StyleLipSyncError(
                    f"the {self.workers} Ray worker(s) were not all ready after {timeout:g} s: does the "
                    f"cluster have {self.cpus_per_worker:g} CPU(s)"
                    + (f" and {self.gpus_per_worker:g} GPU(s)" if self.gpus_per_worker else "")
                    + " free for each? Lower --workers, or see the Ray dashboard"
                )
            for slot, actor in enumerate(self.actors):
                if slot in answers:
                    continue
                try:
                    answers[slot] = ray.get(
                        actor.ready.remote(), timeout=max(0.1, deadline - time.monotonic())
                    )
                except ray.exceptions.GetTimeoutError:
                    continue
                except ray.exceptions.ActorUnavailableError:
                    time.sleep(0.5)
                except ray.exceptions.ActorDiedError as exc:
                    raise StyleLipSyncError(
                        f"a Ray worker could not start ({str(exc).splitlines()[0]}); is stylelipsync[ray] "
                        "installed, in the same version, on every node? See the worker logs (Ray dashboard)"
                    ) from exc
        errors = [error for _, error in answers.values() if error]
        if errors:
            raise CheckpointError(errors[0])
        self.pids = [answers[slot][0] for slot in range(len(self.actors))]
        return list(self.pids)

    def _actor(self, slot: int) -> Any:
        """A new worker for `slot` (not waited for)."""
        ray = import_ray()
        actor = ray.remote(DubbingWorker).options(
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
            max_restarts=-1,
            max_task_retries=0,
            runtime_env={"env_vars": dict(WORKER_ENV)},
        )
        threads = max(1, int(self.cpus_per_worker))
        return actor.remote(
            slot, self.hub_name, self.checkpoint, self.w_avg, self.device, threads, self.engine
        )

    def snapshot(self) -> dict[int, tuple[int, Any, int, int]]:
        """slot → (process id, job tag, frames done, total) of each worker's current or last job."""
        ray = import_ray()
        state: dict[int, tuple[int, Any, int, int]] = ray.get(self.hub.snapshot.remote(), timeout=30)
        return state

    def stop(self, slots: Sequence[int]) -> None:
        """Kill the given workers at once (their running jobs end); `revive` replaces them when needed."""
        ray = import_ray()
        for slot in slots:
            ray.kill(self.actors[slot], no_restart=True)
            self.actors[slot] = None

    def revive(self) -> None:
        """Start new workers in the slots `stop` emptied (not waited for: the backend pings them)."""
        for slot, handle in enumerate(self.actors):
            if handle is None:
                self.actors[slot] = self._actor(slot)

    def close(self) -> None:
        """Stop the actors and the hub."""
        ray = import_ray()
        for handle in [*self.actors, self.hub]:
            if handle is not None:
                with suppress(Exception):
                    ray.kill(handle, no_restart=True)
        self.actors, self.hub = [], None

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def worker_lost_errors() -> tuple[type[BaseException], ...]:
    """Ray's exceptions for a task whose worker process died (killed, out of memory, node lost)."""
    ex = import_ray().exceptions
    return (ex.RayActorError, ex.WorkerCrashedError, ex.OutOfMemoryError, ex.NodeDiedError)


def _death_reason(exc: BaseException) -> str:
    if type(exc).__name__ == "OutOfMemoryError" or "memory" in str(exc).lower():
        return "its Ray worker ran out of memory and was killed"
    return "its Ray worker died (process killed or crashed)"


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
                if job.index not in self.preexisting:
                    self.preexisting[job.index] = _outputs_exist(job)
                self.attempts[job.index] = self.attempts.get(job.index, 0) + 1
                ref = self.pool.actors[slot].run.remote(job)
                refs.append(ref)
                self.inflight[ref] = (slot, job)

    def _settle(self, ref: Any) -> None:
        """A finished task: its outcome, or, if its worker died, the retry or failure of its jobs."""
        if ref not in self.inflight:
            return
        slot, job = self.inflight[ref]
        try:
            outcome: Outcome = self.ray.get(ref)
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
            outcome = self._result_if_any(ref)
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
        remove_partials(running)
        reason = _death_reason(exc)
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

    def _result_if_any(self, ref: Any) -> Outcome | None:
        """The outcome of a task that completed before its worker died; None (and the task cancelled) if
        it did not."""
        finished, _ = self.ray.wait([ref], timeout=0)
        if not finished:
            with suppress(Exception):
                self.ray.cancel(ref)
            return None
        try:
            outcome: Outcome = self.ray.get(ref)
        except self.ray.exceptions.RayError:
            return None
        return outcome

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
            outcome = self._result_if_any(ref)
            if outcome is not None:
                with suppress(Exception):
                    self._done(job, outcome)
                continue
            remove_partials(job)
            if not self.preexisting.get(job.index, True):
                for path in _outputs(job):
                    path.unlink(missing_ok=True)


class RemotePipeline:
    """A `LipSyncPipeline` stand-in whose calls run on one Ray worker (`stylelipsync serve --ray`).

    It connects this process to a running cluster ("auto": the one this machine belongs to; no local Ray
    instance is started, as it would end with this process) and starts one `DubbingWorker` there, which
    loads the model. A call sends the job, relays its progress to `progress` (a callable that may raise to
    stop the job: the worker is then killed, and replaced on the next call), and returns the worker's
    `GenerateResult` or raises the worker's error. Paths must be valid on every node.
    """

    def __init__(
        self,
        address: str,
        checkpoint: str | Path | None = None,
        w_avg: str | Path | None = None,
        device: str = "auto",
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float = 0.0,
        poll_seconds: float = 0.25,
        engine: str | None = None,
    ) -> None:
        self.ray = import_ray()
        if not self.ray.is_initialized():
            connect_ray(address, start_local=False)
        self.poll = poll_seconds
        self.pool = RayPool(
            1, checkpoint, w_avg, device, cpus_per_worker, gpus_per_worker, engine=engine
        ).start()

    def __call__(
        self,
        video: str | Path,
        audio: str | Path,
        output: str | Path,
        options: Any = None,
        *,
        progress: Any = False,
        **overrides: Any,
    ) -> Any:
        from stylelipsync.pipelines.options import GenerateOptions

        opts = (options or GenerateOptions()).updated(**overrides)
        self.pool.revive()
        self.pool.wait_ready()
        tag = f"call-{time.monotonic_ns()}"
        self._last: tuple[int, int] | None = None
        paths = [os.path.abspath(p) for p in (video, audio, output)]
        ref = self.pool.actors[0].generate.remote(*paths, opts, tag)
        try:
            while not self.ray.wait([ref], timeout=self.poll)[0]:
                self._relay(tag, progress)
            self._relay(tag, progress)
        except BaseException:
            self.pool.stop([0])
            with suppress(Exception):
                self.ray.wait([ref], timeout=30)
            remove_partials(Job(0, 0, "", None, None, Path(paths[2]), opts))
            raise
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise
        except worker_lost_errors() as exc:
            remove_partials(Job(0, 0, "", None, None, Path(paths[2]), opts))
            raise StyleLipSyncError(
                f"{_death_reason(exc)} while dubbing; submit the job again, perhaps with a shorter or "
                "smaller video"
            ) from exc

    def _relay(self, tag: str, progress: Any) -> None:
        """Hand the job's progress, when it has changed, to the caller's callable."""
        if not callable(progress):
            return
        try:
            state = self.pool.snapshot().get(0)
        except self.ray.exceptions.RayError:
            return
        if state is not None and state[1] == tag and state[3] > 0 and state[2:] != self._last:
            self._last = state[2:]
            progress(state[2], state[3])

    def close(self) -> None:
        """Stop the worker."""
        self.pool.close()


def _outputs(job: Job) -> list[Path]:
    """The files a job writes: its output and, if asked for, its face crops."""
    crop = job.options.crop_output if job.options is not None else None
    return [p for p in (job.output, Path(crop) if crop else None) if p is not None]


def _outputs_exist(job: Job) -> bool:
    return any(p.exists() for p in _outputs(job))
