"""Dubbing worker processes and the thread in the server that supervises them.

Why processes and not threads: the pipeline holds the GIL for much of its Python-level work (per-frame
tracking, compositing, paste-back), so a thread would make status polls wait behind it; a process shares
nothing with the event loop. It also isolates the server from the native libraries (PyAV, MediaPipe, torch):
a crash or a leak ends one worker, which is replaced, and a job that does not stop when cancelled can be
killed outright. Each worker builds its pipeline once from the service's `EngineSpec` (loading the model),
then claims queued jobs from the SQLite table, runs each as one pipeline call (`jobrun.run_job`)
and reports its progress into the job's row. With `serve --ray` the pipeline is a
`remote.pipeline.RemotePipeline`: the call runs on a Ray worker, the job row is kept here.

Cancellation is checked whenever the pipeline reports progress (every tracked frame, every rendered chunk,
every encoded frame); in a stretch that reports none (building the mouth bank, loading the network on its
first job), the supervisor kills a worker that has not let go of a cancelled job within the grace period and
starts a fresh one. Workers ask the kernel to kill them when the
server dies (Linux `PR_SET_PDEATHSIG`), and also check their parent between jobs and chunks, so a killed
server never leaves a worker running a job that the restarted server runs again.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import queue
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stylelipsync.jobrun import (
    PROGRESS_SECONDS,
    DubbingPipeline,
    JobRun,
    JobStoppedError,
    ProgressThrottle,
    run_job,
)
from stylelipsync.pipelines.engines.spec import EngineSpec
from stylelipsync.serve.db import RUNNING, Job, JobStore

log = logging.getLogger("stylelipsync.serve")

RESULT_PREFIX = "result-"
_OPTION_FLAGS = re.compile(r"--(bbox|face-index|reference-frame|keep-silence|loop|fps|trim|no-trim|engine)\b")


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when the server process ends (Linux), and end now if it already has.

    Ctrl-C is ignored: it reaches the whole process group, and the server stops its children itself (a
    worker dying of it first would look like a crash and fail its job).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)
    watch_parent(parent_pid)


def watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    """A daemon thread that ends this process once its parent is gone (reparented). The portable
    fallback for `die_with_parent`, and all the checker process has: the kernel's parent-death signal
    follows the thread that started a process, and the checker pool starts its process from whichever
    thread submits first."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def job_folder(data_dir: str | Path, job_id: str) -> Path:
    """Where a job's uploads and result live: <data dir>/jobs/<job id>."""
    return Path(data_dir) / "jobs" / job_id


def clean_job_folder(folder: Path, keep: set[str]) -> None:
    """Delete everything in a job folder except the files named in `keep` (partial results, temp files)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name not in keep and entry.is_file():
            entry.unlink(missing_ok=True)


def job_files(job: Job) -> set[str]:
    """The files of a job that must survive a cleanup: its uploads and its recorded result."""
    return {job.video_file, job.audio_file} | ({job.result_file} if job.result_file else set())


def public_message(message: str, job: Job, folder: Path) -> str:
    """A pipeline error as the user should read it: uploads by their names, no server paths, form fields
    instead of CLI flags."""
    message = message.replace(str(folder / job.video_file), f'video "{job.video_name}"')
    message = message.replace(str(folder / job.audio_file), f'audio "{job.audio_name}"')
    message = re.sub(re.escape(str(folder)) + r"/\S*", "the result file", message)
    return _OPTION_FLAGS.sub(lambda m: m.group(1).replace("-", "_"), message)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable: it crosses the spawn boundary)."""

    data_dir: str
    db_path: str
    engine: EngineSpec
    """The pipeline's default engine and its model (`LipSyncPipeline.from_spec`); a job's `engine` option
    wins."""
    device: str
    threads: int
    parent_pid: int
    poll_seconds: float = 0.2
    progress_seconds: float = PROGRESS_SECONDS
    ray_address: str | None = None
    """With `serve --ray`: run each job on a Ray worker at this address (`remote.pipeline.RemotePipeline`)."""


class _Progress:
    """The pipeline's progress receiver (`pipelines.plan.StageProgress`): writes each stage's frames into
    the job row (at most every `progress_seconds`, and always when a stage completes) and stops the run when
    it no longer owns the job. Encoding is reported from the pipeline's writer thread, so writes are
    serialised. Called as a plain (done, total) callable (a Ray worker relays only that), it is the
    rendering stage."""

    def __init__(self, store: JobStore, job: Job, spec: WorkerSpec) -> None:
        self.store, self.job, self.spec = store, job, spec
        self._throttle = ProgressThrottle(spec.progress_seconds)
        self._stages: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        self.stage("rendering", done, total)

    def stage(self, name: str, done: int, total: int) -> None:
        if os.getppid() != self.spec.parent_pid:
            raise JobStoppedError("the server stopped")
        with self._lock:
            self._stages[name] = (done, total)
            if not self._throttle.due(done, total):
                return
            assert self.job.run_token is not None
            if not self.store.report_progress(self.job.id, self.job.run_token, dict(self._stages)):
                raise JobStoppedError("cancelled")


def run_claimed_job(pipe: DubbingPipeline, store: JobStore, job: Job, spec: WorkerSpec) -> None:
    """Run one claimed job to done, failed or stopped; the result appears only when it is complete."""
    from stylelipsync.pipelines.options import GenerateOptions

    token = job.run_token
    assert token is not None
    folder = job_folder(spec.data_dir, job.id)
    output = folder / f"{RESULT_PREFIX}{token[:12]}.mp4"
    try:
        try:
            options = GenerateOptions().updated(**(job.options or {}))
        except Exception as exc:  # checked when the job was submitted: a bug if it fails here
            run = JobRun.failed(exc)
        else:
            progress = _Progress(store, job, spec)
            run = run_job(pipe, folder / job.video_file, folder / job.audio_file, output, options, progress)
        if run.result is not None:
            if not store.finish(job.id, token, output.name, run.result.frames, run.result.engine):
                output.unlink(missing_ok=True)
        elif run.internal:
            log.error("job %s failed with an internal error\n%s", job.id, run.detail)
            detail = public_message(run.error, job, folder)
            store.fail(
                job.id, token, f"internal error ({run.error_type}: {detail}); the server log has details"
            )
        else:
            store.fail(job.id, token, public_message(run.error, job, folder))
    except JobStoppedError:
        output.unlink(missing_ok=True)
    finally:
        store.release(job.id, token)


def worker_main(spec: WorkerSpec, events: Any) -> None:
    """Entry point of a worker process: load the model once, then run queued jobs until the server ends."""
    die_with_parent(spec.parent_pid)
    logging.basicConfig(
        filename=str(Path(spec.data_dir) / "serve.log"),
        level=logging.INFO,
        format=f"%(asctime)s worker {os.getpid()} %(levelname)s: %(message)s",
    )
    import torch

    torch.set_num_threads(spec.threads)
    from stylelipsync.errors import StyleLipSyncError
    from stylelipsync.pipelines import LipSyncPipeline

    pipe: DubbingPipeline
    try:
        if spec.ray_address:
            from stylelipsync.remote.pipeline import RemotePipeline

            pipe = RemotePipeline(spec.ray_address, spec.engine, spec.device)
        else:
            pipe = LipSyncPipeline.from_spec(spec.engine, spec.device)
    except StyleLipSyncError as exc:
        events.put(("error", os.getpid(), str(exc)))
        return
    except Exception as exc:  # report it: a worker that dies while loading would be restarted forever
        log.exception("loading the model failed")
        events.put(("error", os.getpid(), f"cannot load the model ({type(exc).__name__}: {exc})"))
        return
    events.put(("ready", os.getpid(), ""))
    store = JobStore(spec.db_path)
    while os.getppid() == spec.parent_pid:
        job = store.claim(os.getpid())
        if job is None:
            time.sleep(spec.poll_seconds)
            continue
        log.info("job %s started (run %d)", job.id, job.runs)
        run_claimed_job(pipe, store, job, spec)
        log.info("job %s ended: %s", job.id, (store.get(job.id) or job).status)


class WorkerPool:
    """`count` worker processes, kept alive by a supervisor thread that also enforces cancellations.

    All processes are spawned from the supervisor thread: the kernel's parent-death signal follows the
    thread that created a process, and this thread lives as long as the pool.
    """

    def __init__(self, spec: WorkerSpec, count: int, store: JobStore, cancel_grace: float = 5.0) -> None:
        self.spec, self.count, self.store, self.cancel_grace = spec, count, store, cancel_grace
        self._ctx = mp.get_context("spawn")
        self._events: Any = None
        self._procs: list[Any] = [None] * count
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.load_error: str | None = None
        self.restarts = 0

    def start(self, timeout: float = 600.0) -> None:
        """Spawn the workers and wait until one has loaded the model; raise `CheckpointError` if it can't."""
        from stylelipsync.errors import CheckpointError, StyleLipSyncError

        self._events = self._ctx.Queue()
        self._thread = threading.Thread(target=self._supervise, name="serve-supervisor", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise StyleLipSyncError(f"no dubbing worker was ready after {timeout:g} s; see the server log")
        if self.load_error is not None:
            self.stop()
            raise CheckpointError(self.load_error)

    def stop(self) -> None:
        """Stop the workers (a running job goes back to the queue) and the supervisor."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def alive(self) -> int:
        """Worker processes currently running."""
        return sum(1 for p in self._procs if p is not None and p.is_alive())

    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [p.pid for p in self._procs if p is not None and p.is_alive()]

    # -- supervisor thread ----------------------------------------------------------------------------

    def _supervise(self) -> None:
        try:
            for slot in range(self.count):
                self._spawn(slot)
            while not self._stopping.is_set():
                self._drain_events()
                for slot, proc in enumerate(self._procs):
                    if proc is None:
                        continue
                    if not proc.is_alive():
                        self._replace(slot, proc, None)
                    else:
                        self._enforce_cancel(slot, proc)
                self._stopping.wait(0.2)
        except Exception:
            log.exception("the worker supervisor failed")
            self._ready.set()
        finally:
            self._shutdown()

    def _spawn(self, slot: int) -> None:
        proc = self._ctx.Process(
            target=worker_main,
            args=(self.spec, self._events),
            name=f"stylelipsync-worker-{slot}",
            daemon=True,
        )
        proc.start()
        self._procs[slot] = proc

    def _drain_events(self) -> None:
        while True:
            try:
                kind, pid, message = self._events.get_nowait()
            except queue.Empty:
                return
            if kind == "error":
                self.load_error = message
                log.error("worker %s could not load the model: %s", pid, message)
            self._ready.set()

    def _replace(self, slot: int, proc: Any, reason: str | None) -> None:
        """A worker died (or was killed for `reason`): settle its jobs and start another, unless the model
        cannot be loaded at all."""
        proc.join(1)
        code = proc.exitcode
        if reason is None:
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            reason = (
                f"the dubbing worker stopped unexpectedly ({how}), for example because the machine ran out "
                "of memory; submit the job again, perhaps with a shorter or smaller video"
            )
            log.error("worker %s died (%s)", proc.pid, how)
        for job in self.store.worker_lost(proc.pid, reason):
            clean_job_folder(job_folder(self.spec.data_dir, job.id), job_files(job))
        if self.load_error is not None or self._stopping.is_set():
            self._procs[slot] = None
            return
        self.restarts += 1
        self._spawn(slot)

    def _enforce_cancel(self, slot: int, proc: Any) -> None:
        """Kill a worker still holding a cancelled job after the grace period, then replace it."""
        now = time.time()
        for job in self.store.held_by(proc.pid):
            if job.status != RUNNING and job.finished is not None and now - job.finished > self.cancel_grace:
                log.info("worker %s did not stop cancelled job %s in time; restarting it", proc.pid, job.id)
                proc.kill()
                self._replace(slot, proc, "cancelled by request")
                return

    def _shutdown(self) -> None:
        for proc in self._procs:
            if proc is not None and proc.is_alive():
                proc.terminate()
        for slot, proc in enumerate(self._procs):
            if proc is None:
                continue
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            self._procs[slot] = None
        self._events.close()
        self._events.join_thread()
        self._events = None  # frees its semaphores now, not at interpreter exit
        self._ready.set()
