"""The dubbing service behind the HTTP routes: data folder, job table, checker process and worker pool.

Data folder layout (nothing in it is named after a client's file):

    <data dir>/jobs.sqlite3          the job table (`db`)
    <data dir>/jobs/<job id>/        video<ext>, audio<ext> (uploads), result-<run>.mp4 (the dubbed video)
    <data dir>/serve.log             worker log (internal errors with tracebacks)
    <data dir>/serve.lock            held while a server uses the folder

Starting the service recovers from a server that was killed: jobs left running are queued again (or failed
after `db.MAX_INTERRUPTIONS` interruptions), partial files are deleted, and upload folders that never
became a job are removed.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import re
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from stylelipsync.errors import StyleLipSyncError
from stylelipsync.pipelines.engines.spec import EngineSpec
from stylelipsync.serve.checks import CheckedInputs, InputRejectedError, check_inputs, init_checker, warm_up
from stylelipsync.serve.db import Job, JobStore
from stylelipsync.serve.worker import (
    WorkerPool,
    WorkerSpec,
    clean_job_folder,
    job_files,
    job_folder,
)

log = logging.getLogger("stylelipsync.serve")

_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def default_data_dir() -> Path:
    """The per-user data folder: $XDG_DATA_HOME/stylelipsync (~/.local/share/stylelipsync) on Linux,
    ~/Library/Application Support/stylelipsync on macOS, %LOCALAPPDATA%\\stylelipsync on Windows."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "stylelipsync"


def is_job_id(value: str) -> bool:
    """True for a canonical (lower-case, hyphenated) UUID4: the only names a job folder can have."""
    return bool(_UUID4.match(value))


@dataclass(frozen=True)
class ServeSettings:
    """Options of `stylelipsync serve` (see docs/serve.md)."""

    data_dir: Path
    workers: int = 1
    checkpoint: Path | None = None
    w_avg: Path | None = None
    device: str = "auto"
    token: str | None = None
    max_upload_bytes: int = 500 * 2**20
    max_seconds: float = 600.0
    cancel_grace: float = 5.0
    ray_address: str | None = None
    engine: str | None = None
    """The engine of jobs that do not choose one; None: stylelipsync with a checkpoint, bank without."""

    @property
    def engine_spec(self) -> EngineSpec:
        """What the workers render with by default (`--engine`, `--checkpoint`, `--w-avg`), handed to them
        whole."""
        return EngineSpec.resolve(self.engine, self.checkpoint, self.w_avg)

    @property
    def default_engine(self) -> str:
        """The engine a job renders with when its form has no `engine` field."""
        return self.engine_spec.name


class JobService:
    """Owns the data folder while the server runs; `start()` before serving, `stop()` after."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.jobs_dir = self.data_dir / "jobs"
        self.store: JobStore | None = None
        self.pool: WorkerPool | None = None
        self._checker: ProcessPoolExecutor | None = None
        self._lock: IO[str] | None = None
        self.started = False

    # -- life cycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the data folder, recover from a previous server's death, start checker and workers."""
        if self.started:
            return
        try:
            self.jobs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StyleLipSyncError(
                f"{self.data_dir}: cannot create the data folder ({exc.strerror}); pass a writable --data-dir"
            ) from exc
        self._take_lock()
        self.store = JobStore(self.data_dir / "jobs.sqlite3")
        self._recover()
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self._checker = self._new_checker()
        warm = self._checker.submit(warm_up)
        self.pool = WorkerPool(
            self._worker_spec(), self.settings.workers, self.store, self.settings.cancel_grace
        )
        try:
            self.pool.start()
            warm.result(timeout=600)
        except BaseException:
            self._shutdown_checker()
            self._release_lock()
            raise
        self.started = True

    def stop(self) -> None:
        """Stop the workers (running jobs go back to the queue) and the checker; free the folder."""
        if not self.started:
            return
        self.started = False
        if self.pool is not None:
            self.pool.stop()
        self._shutdown_checker()
        if self.store is not None:
            requeued, _ = self.store.requeue_running(count_interruption=False)
            self._clean(requeued)
            self.store.close()
        self._release_lock()

    def _take_lock(self) -> None:
        """One server per data folder: a second one would run the same jobs twice."""
        path = self.data_dir / "serve.lock"
        handle = open(path, "a+")  # noqa: SIM115  (held open until stop)
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass
        except OSError as exc:
            handle.close()
            raise StyleLipSyncError(
                f"{self.data_dir}: another `stylelipsync serve` is using this data folder; stop it or pass "
                "another --data-dir"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _recover(self) -> None:
        """Requeue what a killed server left running; delete partial files and never-queued uploads."""
        assert self.store is not None
        requeued, failed = self.store.requeue_running(count_interruption=True)
        if requeued or failed:
            log.warning(
                "recovered after an unclean stop: %d interrupted job(s) queued again, %d failed",
                len(requeued),
                len(failed),
            )
        self._clean(requeued + failed)
        known = self.store.ids()
        for entry in self.jobs_dir.iterdir():
            if entry.name in known:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def _clean(self, job_ids: list[str]) -> None:
        assert self.store is not None
        for job_id in job_ids:
            job = self.store.get(job_id)
            if job is not None:
                clean_job_folder(self.folder(job_id), job_files(job))

    def _worker_spec(self) -> WorkerSpec:
        s = self.settings
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        return WorkerSpec(
            data_dir=str(self.data_dir),
            db_path=str(self.data_dir / "jobs.sqlite3"),
            engine=s.engine_spec.absolute(),
            device=s.device,
            threads=max(1, cores // s.workers),
            parent_pid=os.getpid(),
            ray_address=s.ray_address,
        )

    def _new_checker(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=mp.get_context("spawn"),
            initializer=init_checker,
        )

    def _shutdown_checker(self) -> None:
        if self._checker is not None:
            self._checker.shutdown(wait=True, cancel_futures=True)
            self._checker = None

    # -- jobs -----------------------------------------------------------------------------------------

    def folder(self, job_id: str) -> Path:
        """The job's folder; only ever called with a checked UUID4."""
        if not is_job_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return job_folder(self.data_dir, job_id)

    def result_path(self, job: Job) -> Path | None:
        """The finished result of a done job, if its file is there (and inside the data folder)."""
        if job.result_file is None or "/" in job.result_file or "\\" in job.result_file:
            return None
        path = (self.folder(job.id) / job.result_file).resolve()
        if not path.is_relative_to(self.jobs_dir) or not path.is_file():
            return None
        return path

    def remove_files(self, job_id: str) -> None:
        """Delete a job's folder."""
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    async def check(
        self, video: Path, audio: Path, labels: dict[str, str], options: dict[str, Any]
    ) -> CheckedInputs:
        """Validate an upload in the checker process; `InputRejectedError` if it cannot be dubbed."""
        if self._checker is None:
            raise InputRejectedError(
                "unavailable", None, "the server is shutting down; submit the job again later"
            )
        future = self._checker.submit(
            check_inputs, str(video), str(audio), labels, options, self.settings.max_seconds
        )
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            log.error("the input checker crashed on an upload; restarting it")
            old, self._checker = self._checker, self._new_checker()
            old.shutdown(wait=False, cancel_futures=True)
            raise InputRejectedError(
                "bad_media",
                None,
                "the files could not be read (the media decoder crashed on them); they are probably damaged. "
                "Re-export them as mp4/wav and submit again.",
            ) from exc
