"""The results manifest `JOBS.results.csv`: one row per finished job, appended as jobs finish.

It is what makes a batch resumable: a job whose last row says `done` (and whose output still exists) is
skipped by the next run, and so is one recorded `failed` unless `--retry-failed` is given. Rows are only ever
appended, each flushed and synced to disk, so an interrupted batch loses at most the jobs that were running;
the last row of a job wins. A lock on the file keeps two runs of the same batch from interleaving.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from stylelipsync.errors import OutputError

FIELDS = ("job", "status", "seconds", "frames", "error", "attempts", "engine")
"""The results file's columns (`engine` came last, so files written before it still read)."""
DONE = "done"
FAILED = "failed"


@dataclass
class Outcome:
    """How one job ended. `error` is the message a user reads; `detail` a traceback (internal errors)."""

    key: str
    status: str
    seconds: float = 0.0
    frames: int = 0
    error: str = ""
    attempts: int = 1
    frames_with_face: int = 0
    internal: bool = False
    detail: str = ""
    engine: str = ""
    """The engine that rendered the job ("bank" or "stylelipsync"; empty if it did not run)."""
    warnings: list[str] = field(default_factory=list)
    """The pipeline's warnings about the job's result (e.g. a bank with poor mouth coverage)."""

    @property
    def ok(self) -> bool:
        """True when the job wrote its output."""
        return self.status == DONE


def manifest_path(jobs: Path) -> Path:
    """`jobs.csv` → `jobs.results.csv`, beside it."""
    return jobs.with_name(f"{jobs.stem}.results.csv")


class Manifest:
    """The results file of one batch, open for appending (use as a context manager)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous: dict[str, Outcome] = {}
        try:
            self._fh = open(path, "a+", newline="", encoding="utf-8")  # noqa: SIM115  (held for the batch)
        except OSError as exc:
            raise OutputError(
                f"{path}: cannot open the results file ({exc.strerror}); make the jobs file's folder writable"
            ) from exc
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._fh.close()
            raise OutputError(
                f"{path}: another run of this batch is using it; wait for it to finish or stop it first"
            ) from exc
        self._load()

    def _load(self) -> None:
        """Read earlier results; write the header into a new file; end a torn last line."""
        self._fh.seek(0)
        text = self._fh.read()
        if not text:
            self._append(",".join(FIELDS) + "\n")
            return
        if not text.endswith("\n"):
            self._append("\n")
        for row in csv.DictReader(io.StringIO(text)):
            outcome = _parse(row)
            if outcome is not None:
                self.previous[outcome.key] = outcome

    def record(self, outcome: Outcome) -> None:
        """Append one job's result and push it to disk before going on."""
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [
                outcome.key,
                outcome.status,
                f"{outcome.seconds:.2f}",
                outcome.frames,
                " ".join(outcome.error.split()),
                outcome.attempts,
                outcome.engine,
            ]
        )
        self._append(buf.getvalue())
        self.previous[outcome.key] = outcome

    def _append(self, text: str) -> None:
        try:
            self._fh.write(text)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write the results file ({exc.strerror})") from exc

    def close(self) -> None:
        """Release the lock and close the file."""
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_manifest(path: Path) -> dict[str, Outcome]:
    """The last result of every job in a results file (empty if there is none yet)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        return {}
    return {o.key: o for o in (_parse(r) for r in rows) if o is not None}


def _parse(row: dict[str, str]) -> Outcome | None:
    """One manifest row, or None for a torn or foreign one."""
    status = (row.get("status") or "").strip()
    key = row.get("job") or ""
    if status not in (DONE, FAILED) or not key:
        return None
    try:
        return Outcome(
            key=key,
            status=status,
            seconds=float(row.get("seconds") or 0),
            frames=int(row.get("frames") or 0),
            error=row.get("error") or "",
            attempts=int(row.get("attempts") or 1),
            engine=row.get("engine") or "",
        )
    except ValueError:
        return None
