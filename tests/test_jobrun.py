"""`stylelipsync.jobrun`: one pipeline call run as a job, as batch, the Ray workers and the service run it."""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

import pytest

from stylelipsync.errors import FaceNotFoundError
from stylelipsync.jobrun import JobRun, JobStoppedError, ProgressThrottle, call_outputs, run_job
from stylelipsync.pipelines import GenerateOptions, GenerateResult


class Pipe:
    """A pipeline stand-in that raises `error` or writes nothing and returns a result."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.progress: Any = None

    def __call__(
        self,
        video: str | Path,
        audio: str | Path,
        output: str | Path,
        options: Any = None,
        *,
        progress: Any = False,
    ) -> GenerateResult:
        self.progress = progress
        if self.error is not None:
            raise self.error
        return GenerateResult(Path(output), 5, 4, 25.0, 0.1, 8, 8, 5, engine="bank")


def test_a_finished_call_returns_its_result_and_gets_the_progress_receiver() -> None:
    pipe = Pipe()
    receiver = print
    run = run_job(pipe, "v.mp4", "a.wav", "o.mp4", GenerateOptions(), receiver)
    assert run.ok and run.result is not None and run.result.frames_with_face == 4 and run.error == ""
    assert pipe.progress is receiver


def test_a_user_error_fails_the_job_with_its_message() -> None:
    run = run_job(Pipe(FaceNotFoundError("v.mp4: no face found")), "v.mp4", "a.wav", "o.mp4", None)
    assert not run.ok and not run.internal and run.error == "v.mp4: no face found" and run.detail == ""
    assert run.error_type == "FaceNotFoundError"


def test_a_bug_fails_the_job_as_internal_with_its_traceback_and_pickles() -> None:
    run = run_job(Pipe(KeyError("frames")), "v.mp4", "a.wav", "o.mp4", None)
    assert not run.ok and run.internal
    assert (run.error_type, run.error_repr) == ("KeyError", "KeyError('frames')")
    assert "Traceback" in run.detail and "raise self.error" in run.detail
    assert pickle.loads(pickle.dumps(run)) == run  # a Ray worker returns it


@pytest.mark.parametrize("stop", [JobStoppedError("cancelled"), KeyboardInterrupt()])
def test_a_stopped_or_interrupted_call_is_not_turned_into_a_failure(stop: BaseException) -> None:
    with pytest.raises(type(stop)):
        run_job(Pipe(stop), "v.mp4", "a.wav", "o.mp4", None)


def test_the_throttle_lets_a_report_through_every_period_and_always_the_last() -> None:
    throttle = ProgressThrottle(seconds=60)
    assert [throttle.due(d, 10) for d in (1, 2, 9)] == [True, False, False]
    assert throttle.due(10, 10)  # the last report always goes through
    quick = ProgressThrottle(seconds=0.05)
    assert quick.due(1, 10) and not quick.due(2, 10)
    time.sleep(0.06)
    assert quick.due(3, 10)


def test_call_outputs_include_the_crop_video() -> None:
    assert call_outputs("o.mp4", None) == [Path("o.mp4")]
    assert call_outputs("o.mp4", GenerateOptions(crop_output="c.mp4")) == [Path("o.mp4"), Path("c.mp4")]
    assert JobRun().ok is False


def test_a_local_batch_turns_each_call_into_an_outcome(tmp_path: Path) -> None:
    """`batch`'s local backend runs each row through `run_job`: a bug fails its row as internal (with the
    exception and traceback), a user error with its message, a bad row without a call; the rest run."""
    from contextlib import nullcontext

    from stylelipsync.batch.jobs import Job
    from stylelipsync.batch.report import Reporter
    from stylelipsync.batch.runner import LocalBackend, run_batch

    class Outcomes(Reporter):
        def __init__(self) -> None:
            self.seen: dict[str, Any] = {}

        def finished(self, job: Any, outcome: Any) -> None:
            self.seen[job.key] = outcome

    class Rows:
        def __call__(
            self, video: Any, audio: Any, output: Any, options: Any = None, *, progress: Any = False
        ) -> Any:
            errors = {"bug.mp4": KeyError("frames"), "noface.mp4": FaceNotFoundError("no face found")}
            if Path(output).name in errors:
                raise errors[Path(output).name]
            return Pipe()(video, audio, output, options)

    opts = GenerateOptions()
    jobs = [
        Job(1, 2, "ok.mp4", tmp_path / "v.mp4", tmp_path / "a.wav", tmp_path / "ok.mp4", opts),
        Job(2, 3, "bug.mp4", tmp_path / "v.mp4", tmp_path / "a.wav", tmp_path / "bug.mp4", opts),
        Job(3, 4, "noface.mp4", tmp_path / "v.mp4", tmp_path / "a.wav", tmp_path / "noface.mp4", opts),
        Job(
            4,
            5,
            "bad.mp4",
            None,
            None,
            None,
            None,
            problem="line 5: video, audio and output must all be given",
        ),
    ]
    reporter = Outcomes()
    summary = run_batch(jobs, lambda _todo: nullcontext(LocalBackend(Rows())), reporter)
    assert (summary.done_now, summary.failed_now) == (1, 3)
    ok, bug, noface, bad = (reporter.seen[k] for k in ("ok.mp4", "bug.mp4", "noface.mp4", "bad.mp4"))
    assert ok.ok and (ok.frames, ok.frames_with_face, ok.engine) == (5, 4, "bank")
    assert bug.internal and bug.error == "internal error: KeyError('frames')" and "Traceback" in bug.detail
    assert not noface.internal and noface.error == "no face found"
    assert bad.error == "line 5: video, audio and output must all be given" and bad.seconds == 0
