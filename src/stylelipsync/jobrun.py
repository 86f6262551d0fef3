"""One pipeline call run as a job, the same way for `batch` (here and on Ray workers) and the service.

* `DubbingPipeline`: what a job needs of a pipeline. `LipSyncPipeline` is one; `remote.pipeline.
  RemotePipeline` (the call runs on a Ray worker) is another, and tests stand in their own;
* `run_job`: call the pipeline and say how it ended (`JobRun`) instead of raising: a user error
  (`StyleLipSyncError`, the message to show) or an internal one (a bug, with its traceback), so that one job
  never loses the others. A progress receiver stops a call by raising `JobStoppedError` (let through).
* `ProgressThrottle`: progress posted at most every `PROGRESS_SECONDS` (and always the last report), for
  receivers across a process boundary (a job row, a Ray actor).
* `call_outputs` / `remove_partials`: the files a call writes, and the temporary ones a killed call leaves.

A top-level module, importing only `errors` at run time: the service's HTTP process imports it (through
`serve.worker`) and must stay light; `stylelipsync.pipelines` would import the whole pipeline.
"""

from __future__ import annotations

import re
import time
import traceback
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from stylelipsync.errors import StyleLipSyncError

if TYPE_CHECKING:
    from stylelipsync.pipelines.options import GenerateOptions, GenerateResult
    from stylelipsync.pipelines.plan import Progress, StageProgress

PROGRESS_SECONDS = 0.25
"""How often a worker posts the frames done of its job (and the last report always)."""


class DubbingPipeline(Protocol):
    """Dubs `video` with `audio` into `output`; `progress` as in `LipSyncPipeline.__call__` (it may raise to
    stop the call). Raises `StyleLipSyncError` for what the user can fix."""

    def __call__(
        self,
        video: str | Path,
        audio: str | Path,
        output: str | Path,
        options: GenerateOptions | None = None,
        *,
        progress: Progress | StageProgress = False,
    ) -> GenerateResult: ...


class JobStoppedError(Exception):
    """Raised by a progress receiver to stop the call (cancelled, server gone); `run_job` lets it through."""


@dataclass
class JobRun:
    """How one call ended: its `result`, or `error` (the exception's message) and whether it was `internal`
    (a bug: then `error_type`, `error_repr` and the traceback in `detail` say more). Plain values: it
    pickles (a Ray worker returns it)."""

    result: GenerateResult | None = None
    seconds: float = 0.0
    """Wall time of the call."""
    error: str = ""
    internal: bool = False
    error_type: str = ""
    error_repr: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when the call wrote its output."""
        return self.result is not None

    @classmethod
    def failed(cls, exc: Exception, seconds: float = 0.0) -> JobRun:
        """A call that raised `exc`: a user error if it is a `StyleLipSyncError`, else an internal one (to be
        called in the `except` block: the traceback is the one being handled)."""
        if isinstance(exc, StyleLipSyncError):
            return cls(seconds=seconds, error=str(exc), error_type=type(exc).__name__, error_repr=repr(exc))
        return cls(
            seconds=seconds,
            error=str(exc),
            internal=True,
            error_type=type(exc).__name__,
            error_repr=repr(exc),
            detail=traceback.format_exc(),
        )


def run_job(
    pipe: DubbingPipeline,
    video: str | Path,
    audio: str | Path,
    output: str | Path,
    options: GenerateOptions | None,
    progress: Progress | StageProgress = False,
) -> JobRun:
    """Run one pipeline call; every failure becomes a failed `JobRun`, never an exception
    (`JobStoppedError` and Ctrl-C still interrupt)."""
    start = time.perf_counter()
    try:
        result = pipe(video, audio, output, options=options, progress=progress)
    except JobStoppedError:
        raise
    except Exception as exc:  # a bug in one job must not lose the others
        return JobRun.failed(exc, time.perf_counter() - start)
    return JobRun(result=result, seconds=time.perf_counter() - start)


class ProgressThrottle:
    """Lets a (done, total) report through if `seconds` have passed since the last one let through, or if it
    is the last one (done == total)."""

    def __init__(self, seconds: float = PROGRESS_SECONDS) -> None:
        self.seconds = seconds
        self._last = 0.0

    def due(self, done: int, total: int) -> bool:
        """Whether to post this report (and, if so, restart the clock)."""
        now = time.monotonic()
        if done < total and now - self._last < self.seconds:
            return False
        self._last = now
        return True


def call_outputs(output: str | Path | None, options: GenerateOptions | None) -> list[Path]:
    """The files a call writes: its output and, if asked for, its face crops."""
    crop = options.crop_output if options is not None else None
    return [Path(p) for p in (output, crop) if p]


_PARTIAL = re.compile(r"\.[0-9a-f]{8}\.part")
_PROBE = re.compile(r"\.[0-9a-f]{16}\.probe")


def remove_partials(outputs: list[Path]) -> None:
    """Delete the temporary files a killed call left beside its `outputs`.

    `VideoWriter` writes `.<stem>.<8 hex digits>.part<suffix>` beside the output and renames it when done,
    and the output check creates and deletes `.<stem>.<16 hex digits>.probe`; a process killed mid-call
    (SIGKILL, out of memory, an interrupted batch stopping its workers) leaves them behind.
    """
    for output in outputs:
        prefix = f".{output.stem}."
        with suppress(OSError):
            for entry in output.parent.iterdir():
                name = entry.name
                if not name.startswith(prefix):
                    continue
                partial = name.endswith(output.suffix) and _PARTIAL.fullmatch(
                    name[len(prefix) - 1 : len(name) - len(output.suffix)]
                )
                if partial or _PROBE.fullmatch(name[len(prefix) - 1 :]):
                    entry.unlink(missing_ok=True)
