"""The job table: one SQLite database in the data folder, shared by the HTTP process and the workers.

SQLite in WAL mode lets status polls read while a worker writes its progress, and survives a killed server:
every state change is one committed statement. Each run of a job gets a fresh `run_token`; a worker's
writes (progress, done, failed) are conditioned on it, so a cancelled job, or a worker left over from an
earlier server life, can never change a row it no longer owns.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL = frozenset({DONE, FAILED, CANCELLED})
MAX_INTERRUPTIONS = 3
"""A job that was running when the server died this many times is failed instead of re-run again."""

SCHEMA_VERSION = 2
STAGES = ("tracking", "rendering", "encoding")
"""The stages of a run, in order (`pipelines.plan.StageProgress`); each has its own progress."""
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    progress REAL NOT NULL DEFAULT 0,
    frames_done INTEGER,
    frames_total INTEGER,
    error TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    video_file TEXT NOT NULL,
    audio_file TEXT NOT NULL,
    video_name TEXT NOT NULL DEFAULT '',
    audio_name TEXT NOT NULL DEFAULT '',
    seconds REAL,
    result_file TEXT,
    run_token TEXT,
    worker_pid INTEGER,
    runs INTEGER NOT NULL DEFAULT 0,
    interruptions INTEGER NOT NULL DEFAULT 0,
    stages TEXT NOT NULL DEFAULT '{}',
    engine TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status_created ON jobs (status, created);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
"""
MIGRATIONS = {
    1: (
        "ALTER TABLE jobs ADD COLUMN stages TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE jobs ADD COLUMN engine TEXT",
    ),
}
"""Statements that bring a database of schema version N to N + 1 (a data folder of an older server)."""


def iso_time(t: float | None) -> str | None:
    """Epoch seconds → ISO 8601 UTC with milliseconds (what the API shows), None stays None."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Job:
    """One row of the job table."""

    id: str
    status: str
    created: float
    video_file: str
    audio_file: str
    video_name: str = ""
    audio_name: str = ""
    options: dict[str, Any] | None = None
    seconds: float | None = None
    started: float | None = None
    finished: float | None = None
    progress: float = 0.0
    frames_done: int | None = None
    frames_total: int | None = None
    error: str | None = None
    result_file: str | None = None
    run_token: str | None = None
    worker_pid: int | None = None
    runs: int = 0
    interruptions: int = 0
    stages: dict[str, list[int]] | None = None
    """Frames [done, total] of each stage reported so far by the current run (see `STAGES`)."""
    engine: str | None = None
    """The engine that rendered the result (set when the job is done)."""

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        """Build from a `SELECT *` row."""
        data = dict(row)
        data["options"] = json.loads(data["options"] or "{}")
        data["stages"] = json.loads(data["stages"] or "{}")
        return cls(**data)

    def stage_progress(self) -> tuple[str | None, list[dict[str, Any]]]:
        """(the stage a running job is in, each stage's {name, done, total, progress}).

        A done job has every stage complete (a stage never reported, as with `serve --ray`, has the result's
        frames, or None for tracking). While running, the current stage is the first one not
        complete (the stages overlap: rendering starts while encoding is behind it); with all frames
        encoded, it is still "encoding" until the file is finished. Unknown totals are None.
        """
        reported = self.stages or {}
        out: list[dict[str, Any]] = []
        for name in STAGES:
            done, total = reported.get(name, (0, None))
            if self.status == DONE:  # rendering and encoding count output frames: those of the result
                total = total or (self.frames_total if name != "tracking" else None)
                done = total if total is not None else done
            fraction = 1.0 if self.status == DONE else (min(1.0, done / total) if total else 0.0)
            out.append({"name": name, "done": done, "total": total, "progress": round(fraction, 4)})
        if self.status != RUNNING:
            return None, out
        current = next((s["name"] for s in out if s["progress"] < 1), STAGES[-1])
        return current, out

    def public(self) -> dict[str, Any]:
        """What the API returns for this job (no server paths, no internal fields)."""
        stage, stages = self.stage_progress()
        return {
            "id": self.id,
            "status": self.status,
            "progress": round(self.progress, 4),
            "frames_done": self.frames_done,
            "frames_total": self.frames_total,
            "error": self.error,
            "created": iso_time(self.created),
            "started": iso_time(self.started),
            "finished": iso_time(self.finished),
            "video_name": self.video_name,
            "audio_name": self.audio_name,
            "seconds": self.seconds,
            "options": self.options or {},
            "runs": self.runs,
            "engine": self.engine or (self.options or {}).get("engine"),
            "stage": stage,
            "stages": stages,
        }


class JobStore:
    """The job table of one data folder. Safe to use from many threads and processes (one connection per
    thread, WAL journal, a 30 s busy timeout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        with self._cursor() as cur:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.executescript(SCHEMA)
        with self._transaction() as cur:  # one process migrates, the others wait for it
            version = cur.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                cur.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            while version in MIGRATIONS:
                for statement in MIGRATIONS[version]:
                    cur.execute(statement)
                version += 1
                cur.execute(f"PRAGMA user_version={version}")
            if version not in (0, SCHEMA_VERSION):
                raise RuntimeError(
                    f"{self.path}: job database of schema version {version}, this version of stylelipsync "
                    f"reads version {SCHEMA_VERSION}; use another --data-dir"
                )

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _cursor(self) -> Iterator[sqlite3.Cursor]:
        cur = self._connection().cursor()
        try:
            yield cur
        finally:
            cur.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE … COMMIT (rolled back on an exception): a read-then-write no one interleaves."""
        with self._cursor() as cur:
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- HTTP side ------------------------------------------------------------------------------------

    def add(self, job: Job) -> None:
        """Insert a new (queued) job."""
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO jobs (id, status, created, options, video_file, audio_file, video_name, "
                "audio_name, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.status,
                    job.created,
                    json.dumps(job.options or {}),
                    job.video_file,
                    job.audio_file,
                    job.video_name,
                    job.audio_name,
                    job.seconds,
                ),
            )

    def get(self, job_id: str) -> Job | None:
        """The job, or None."""
        with self._cursor() as cur:
            row = cur.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def recent(self, limit: int = 50, status: str | None = None) -> list[Job]:
        """The newest jobs first, optionally only those with `status`."""
        with self._cursor() as cur:
            if status is None:
                rows = cur.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = cur.execute(
                    "SELECT * FROM jobs WHERE status = ? ORDER BY created DESC LIMIT ?", (status, limit)
                ).fetchall()
        return [Job.from_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Number of jobs per status."""
        with self._cursor() as cur:
            rows = cur.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {status: 0 for status in (QUEUED, RUNNING, DONE, FAILED, CANCELLED)} | {
            r[0]: r[1] for r in rows
        }

    def queue_position(self, job: Job) -> int:
        """How many queued jobs were submitted before this one."""
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT COUNT(*) FROM jobs WHERE status = ? AND created < ?", (QUEUED, job.created)
            ).fetchone()
        return int(row[0])

    def cancel(self, job_id: str) -> Job | None:
        """Mark a queued or running job cancelled (its worker notices at its next progress report).

        Returns the updated job, or None if it was not queued or running.
        """
        with self._cursor() as cur:
            cur.execute(
                "UPDATE jobs SET status = ?, finished = ?, error = ? WHERE id = ? AND status IN (?, ?)",
                (CANCELLED, time.time(), "cancelled by request", job_id, QUEUED, RUNNING),
            )
            changed = cur.rowcount
        return self.get(job_id) if changed else None

    def delete(self, job_id: str) -> bool:
        """Delete a finished job whose worker has let go of it; False if there is no such job."""
        with self._cursor() as cur:
            cur.execute(
                f"DELETE FROM jobs WHERE id = ? AND status IN ({', '.join('?' * len(FINAL))}) "
                "AND worker_pid IS NULL",
                (job_id, *sorted(FINAL)),
            )
            return cur.rowcount > 0

    def ids(self) -> set[str]:
        """Every job id (for cleaning upload folders that never became a job)."""
        with self._cursor() as cur:
            return {r[0] for r in cur.execute("SELECT id FROM jobs").fetchall()}

    # -- worker side ----------------------------------------------------------------------------------

    def claim(self, worker_pid: int) -> Job | None:
        """Take the oldest queued job for this worker (status → running, fresh run token); None if none."""
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT id FROM jobs WHERE status = ? ORDER BY created LIMIT 1", (QUEUED,)
            ).fetchone()
            if row is None:
                return None
            cur.execute(
                "UPDATE jobs SET status = ?, started = ?, run_token = ?, worker_pid = ?, runs = runs + 1, "
                "progress = 0, frames_done = NULL, frames_total = NULL, error = NULL, stages = '{}', "
                "engine = NULL WHERE id = ?",
                (RUNNING, time.time(), uuid.uuid4().hex, worker_pid, row[0]),
            )
            job = cur.execute("SELECT * FROM jobs WHERE id = ?", (row[0],)).fetchone()
        return Job.from_row(job)

    def report_progress(self, job_id: str, token: str, stages: dict[str, tuple[int, int]]) -> bool:
        """Record frames [done, total] per stage (rendering also as frames_done, frames_total, progress);
        False when the job is no longer this run's to work on (cancelled, deleted)."""
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; the stages are {', '.join(STAGES)}")
        done, total = stages.get("rendering", (None, None))
        with self._cursor() as cur:
            cur.execute(
                "UPDATE jobs SET stages = ?, frames_done = ?, frames_total = ?, progress = ? "
                "WHERE id = ? AND run_token = ? AND status = ?",
                (
                    json.dumps({name: list(value) for name, value in stages.items()}),
                    done,
                    total,
                    done / total if done is not None and total else 0.0,
                    job_id,
                    token,
                    RUNNING,
                ),
            )
            return cur.rowcount > 0

    def still_running(self, job_id: str, token: str) -> bool:
        """True while this run owns the job and nobody cancelled it."""
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT 1 FROM jobs WHERE id = ? AND run_token = ? AND status = ?", (job_id, token, RUNNING)
            ).fetchone()
        return row is not None

    def finish(
        self, job_id: str, token: str, result_file: str, frames: int, engine: str | None = None
    ) -> bool:
        """Mark done with its result file and the engine that rendered it; False if the run no longer owns
        the job (then discard the file)."""
        with self._cursor() as cur:
            cur.execute(
                "UPDATE jobs SET status = ?, finished = ?, result_file = ?, progress = 1, frames_done = ?, "
                "frames_total = ?, engine = ?, worker_pid = NULL "
                "WHERE id = ? AND run_token = ? AND status = ?",
                (DONE, time.time(), result_file, frames, frames, engine, job_id, token, RUNNING),
            )
            return cur.rowcount > 0

    def fail(self, job_id: str, token: str, message: str) -> bool:
        """Mark failed with a message for the user; False if the run no longer owns the job."""
        with self._cursor() as cur:
            cur.execute(
                "UPDATE jobs SET status = ?, finished = ?, error = ?, worker_pid = NULL "
                "WHERE id = ? AND run_token = ? AND status = ?",
                (FAILED, time.time(), message, job_id, token, RUNNING),
            )
            return cur.rowcount > 0

    def release(self, job_id: str, token: str) -> None:
        """The run has stopped working on the job (whatever its state): forget its worker."""
        with self._cursor() as cur:
            cur.execute("UPDATE jobs SET worker_pid = NULL WHERE id = ? AND run_token = ?", (job_id, token))

    # -- supervisor side ------------------------------------------------------------------------------

    def held_by(self, worker_pid: int) -> list[Job]:
        """Jobs this worker process has not let go of (normally at most one)."""
        with self._cursor() as cur:
            rows = cur.execute("SELECT * FROM jobs WHERE worker_pid = ?", (worker_pid,)).fetchall()
        return [Job.from_row(r) for r in rows]

    def worker_lost(self, worker_pid: int, message: str) -> list[Job]:
        """A worker process died: fail the job it was running, let go of any it held. Returns them."""
        with self._transaction() as cur:
            rows = cur.execute("SELECT * FROM jobs WHERE worker_pid = ?", (worker_pid,)).fetchall()
            cur.execute(
                "UPDATE jobs SET status = ?, finished = ?, error = ? WHERE worker_pid = ? AND status = ?",
                (FAILED, time.time(), message, worker_pid, RUNNING),
            )
            cur.execute("UPDATE jobs SET worker_pid = NULL WHERE worker_pid = ?", (worker_pid,))
        return [Job.from_row(r) for r in rows]

    def requeue_running(self, count_interruption: bool) -> tuple[list[str], list[str]]:
        """Jobs left `running` by a server that stopped: queue them again (or fail those interrupted
        `MAX_INTERRUPTIONS` times). Called before any worker starts. Returns (re-queued ids, failed ids)."""
        requeued: list[str] = []
        failed: list[str] = []
        with self._transaction() as cur:
            rows = cur.execute("SELECT id, interruptions FROM jobs WHERE status = ?", (RUNNING,)).fetchall()
            for job_id, interruptions in rows:
                n = interruptions + (1 if count_interruption else 0)
                if n >= MAX_INTERRUPTIONS:
                    cur.execute(
                        "UPDATE jobs SET status = ?, finished = ?, interruptions = ?, run_token = NULL, "
                        "error = ? WHERE id = ?",
                        (
                            FAILED,
                            time.time(),
                            n,
                            f"the server stopped {n} times while this job was running; it is not retried "
                            "again. Submit it again, perhaps with a shorter clip",
                            job_id,
                        ),
                    )
                    failed.append(job_id)
                else:
                    cur.execute(
                        "UPDATE jobs SET status = ?, interruptions = ?, run_token = NULL, progress = 0, "
                        "frames_done = NULL, frames_total = NULL, started = NULL, stages = '{}' WHERE id = ?",
                        (QUEUED, n, job_id),
                    )
                    requeued.append(job_id)
            cur.execute("UPDATE jobs SET worker_pid = NULL WHERE worker_pid IS NOT NULL")
        return requeued, failed
