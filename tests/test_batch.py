"""`stylelipsync batch`: the jobs CSV, the results manifest, local runs, and Ray runs on a real local Ray
instance (one for the module, with one shared pool of two workers): outputs equal to local `generate`, a
killed worker restarted and its job completed, a corrupt input failed without a retry, a finished batch not
run again, an interrupted batch resumed; and `serve --ray` running a job on a Ray worker.

Workers take half a CPU each, so that the module's pool and the one a CLI run starts fit together in the
instance's two CPUs.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from stylelipsync.batch.jobs import read_jobs
from stylelipsync.batch.manifest import Manifest, Outcome, manifest_path, read_manifest
from stylelipsync.batch.report import Reporter, Summary
from stylelipsync.batch.runner import RayBackend, _RayRun, job_outputs, run_batch
from stylelipsync.cli import cli
from stylelipsync.errors import MediaError
from stylelipsync.jobrun import remove_partials
from stylelipsync.media import VideoReader, VideoWriter, load_audio, probe
from stylelipsync.models import StyleLipSync, StyleLipSyncConfig
from stylelipsync.pipelines import GenerateOptions, GenerateResult, LipSyncPipeline
from stylelipsync.pipelines.engines import EngineSpec
from stylelipsync.remote.ray_pool import RayPool

CLIPS = ("deepavsr_00001.mp4", "pcavs_Audio_Source_00086.mp4", "pcavs_Pose_Source_00473.mp4")
FRAMES = 25


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def write_jobs(
    folder: Path, rows: list[tuple[Path, Path, str]], extra: dict[str, list[str]] | None = None
) -> Path:
    """A jobs CSV in `folder` (outputs relative to it), with optional extra columns."""
    folder.mkdir(parents=True, exist_ok=True)
    extra = extra or {}
    lines = [",".join(["video", "audio", "output", *extra])]
    for i, (video, audio, output) in enumerate(rows):
        lines.append(",".join([str(video), str(audio), output, *(values[i] for values in extra.values())]))
    path = folder / "jobs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def frames_of(path: Path) -> np.ndarray:
    return np.stack([f.image for f in VideoReader(path)])


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".part" in p.name or p.name.endswith(".probe"))


class Recorder(Reporter):
    """Keeps what a run reported."""

    def __init__(self) -> None:
        self.finished_jobs: list[tuple[str, Outcome]] = []
        self.retried: list[str] = []
        self.pids: set[int] = set()

    def progress(self, job: Any, done: int, total: int, pid: int) -> None:
        self.pids.add(pid)

    def retrying(self, job: Any, attempt: int, reason: str) -> None:
        self.retried.append(job.key)

    def finished(self, job: Any, outcome: Outcome) -> None:
        self.finished_jobs.append((job.key, outcome))


def run_on_pool(jobs_csv: Path, pool: RayPool, reporter: Reporter | None = None, retries: int = 2) -> Summary:
    jobs = read_jobs(jobs_csv, GenerateOptions())
    with Manifest(manifest_path(jobs_csv)) as manifest:
        return run_batch(jobs, lambda _todo: nullcontext(RayBackend(pool, retries)), reporter, manifest)


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread here, as in the workers: the same model on the same CPU gives the same pixels."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("batch_model")
    StyleLipSync(StyleLipSyncConfig.tiny()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def clips(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The first second of three small talking clips, each with its own speech."""
    root = tmp_path_factory.mktemp("batch_clips")
    out = []
    for name in CLIPS:
        source = media_dir / name
        info = probe(source)
        speech = load_audio(source, 16000)[: int(16000 * FRAMES / info.fps)]
        target = root / name
        with VideoWriter(target, info.fps, info.width, info.height, audio=speech, sample_rate=16000) as w:
            for i, frame in enumerate(VideoReader(source)):
                if i == FRAMES:
                    break
                w.write(frame.image)
        out.append(target)
    return out


@pytest.fixture(scope="module")
def pool(ray_instance: Any, model_dir: Path) -> Iterator[RayPool]:
    with RayPool(2, EngineSpec.resolve(checkpoint=model_dir), cpus_per_worker=0.5).start() as started:
        yield started


@pytest.fixture(scope="module")
def finished_batch(
    pool: RayPool, clips: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Summary, Recorder, int]:
    """Six jobs (three clips, each with two speeches) run on the pool; also the most jobs seen in flight."""
    folder = tmp_path_factory.mktemp("six")
    rows = [(clips[i], clips[(i + k) % 3], f"out/job{2 * i + k - 1}.mp4") for i in range(3) for k in (1, 2)]
    jobs_csv = write_jobs(folder, rows)
    most = [0]
    fill = _RayRun._fill

    def counting_fill(self: _RayRun) -> None:
        fill(self)
        most[0] = max(most[0], len(self.inflight))

    recorder = Recorder()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_RayRun, "_fill", counting_fill)
        summary = run_on_pool(jobs_csv, pool, recorder)
    return jobs_csv, summary, recorder, most[0]


# ----------------------------------------------------------------------------------------------- Ray runs


def test_a_ray_batch_writes_what_local_generate_writes(finished_batch: Any, model_dir: Path) -> None:
    jobs_csv, summary, recorder, most_in_flight = finished_batch
    folder = jobs_csv.parent
    assert (summary.done_now, summary.failed_now) == (6, 0)
    assert 1 <= most_in_flight <= 2 * 2
    assert len(recorder.pids) == 2  # both workers ran jobs
    results = read_manifest(manifest_path(jobs_csv))
    assert sorted(results) == [f"out/job{k}.mp4" for k in range(6)]
    assert all(o.ok and o.frames == FRAMES and o.attempts == 1 and o.seconds > 0 for o in results.values())
    reference = folder / "reference.csv"
    reference.write_text(jobs_csv.read_text().replace("out/", "ref/"))
    # The Ray workers run the network on one thread each (cpus_per_worker < 1); the reference does too, since
    # a different thread count may round some kernels differently on some CPUs.
    local = invoke("generate", "--jobs", reference, "-c", model_dir, "--threads", "1")
    assert local.exit_code == 0, local.output
    for k in range(6):
        ours, theirs = folder / "out" / f"job{k}.mp4", folder / "ref" / f"job{k}.mp4"
        twin = folder / "ref" / f"job{k + 1 if k % 2 == 0 else k - 1}.mp4"
        frames = frames_of(ours).astype(np.int16)
        assert len(frames) == FRAMES
        # Same computation in another process: on this CPU the face tracker or a thread pool can land a little
        # differently between processes (1fd0d3b, before the bank engine, fails a bit-exact check here too;
        # seen: mean differences up to 0.7 levels), so the frames need only be close.
        assert float(np.abs(frames - frames_of(theirs)).mean()) < 3.0, f"job{k}: frames differ"
        # The job's identity is exact in its sound: the speech muxed in is its own, not that of its twin
        # (same video, other speech).
        own, ref, other = (load_audio(p, 16000)[:16000] for p in (ours, theirs, twin))
        assert np.corrcoef(own, ref)[0, 1] > 0.99 > np.corrcoef(own, other)[0, 1], f"job{k}: wrong speech"
    assert partials(folder) == []


def test_rerunning_a_finished_batch_does_no_work(finished_batch: Any, model_dir: Path) -> None:
    jobs_csv = finished_batch[0]
    outputs = sorted((jobs_csv.parent / "out").iterdir())
    before = manifest_path(jobs_csv).read_bytes(), [p.stat().st_mtime_ns for p in outputs]
    result = invoke("batch", jobs_csv, "--ray", "auto", "-c", model_dir)
    assert result.exit_code == 0, result.output
    assert "6 of 6 jobs already finished earlier (6 done, 0 failed): skipped" in result.stdout
    assert "6 of 6 jobs done, 0 failed" in result.stdout
    assert "Ray: starting" not in result.output  # no worker was even started
    assert (manifest_path(jobs_csv).read_bytes(), [p.stat().st_mtime_ns for p in outputs]) == before


def test_workers_run_at_the_niceness_of_a_local_run(pool: RayPool, ray_instance: Any) -> None:
    """Ray starts workers 15 nice levels below its own processes; a dubbing worker there loses the CPU to
    everything else (the 6.7 % overhead of issue #24), so the pool starts them at the priority of the process
    that started Ray, like `generate` run here (this test process, possibly itself niced)."""
    here = os.nice(0)
    assert ray_instance.get([actor.niceness.remote() for actor in pool.actors], timeout=60) == [here, here]


def test_a_killed_worker_is_restarted_and_its_job_completes(
    pool: RayPool, clips: list[Path], tmp_path: Path
) -> None:
    class KillOnce(Recorder):
        killed: tuple[str, int] | None = None

        def progress(self, job: Any, done: int, total: int, pid: int) -> None:
            super().progress(job, done, total, pid)
            if self.killed is None and 0 < done < total:
                self.killed = (job.key, pid)
                os.kill(pid, signal.SIGKILL)

    rows = [(clips[i], clips[i], f"out/k{i}.mp4") for i in range(3)]
    jobs_csv = write_jobs(tmp_path, rows, {"batch_size": ["4"] * 3})
    reporter = KillOnce()
    summary = run_on_pool(jobs_csv, pool, reporter)
    assert reporter.killed is not None, "no worker was seen mid-job"
    key, pid = reporter.killed
    assert pid not in pool.wait_ready(timeout=300)  # restarted: a new process
    assert reporter.retried == [key]
    assert (summary.done_now, summary.failed_now) == (3, 0)
    results = read_manifest(manifest_path(jobs_csv))
    assert results[key].attempts == 2 and results[key].ok
    assert all(results[k].attempts == 1 for k in results if k != key)
    for i in range(3):
        assert probe(tmp_path / "out" / f"k{i}.mp4").n_frames == FRAMES
    assert partials(tmp_path) == []


def test_a_corrupt_input_fails_alone_and_is_not_retried(
    pool: RayPool, clips: list[Path], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(clips[0].read_bytes()[:2000])
    rows = [
        (clips[0], clips[1], "out/a.mp4"),
        (corrupt, clips[1], "out/b.mp4"),
        (clips[2], clips[0], "out/c.mp4"),
    ]
    reporter = Recorder()
    summary = run_on_pool(write_jobs(tmp_path, rows), pool, reporter)
    assert (summary.done_now, summary.failed_now) == (2, 1)
    assert reporter.retried == []
    results = read_manifest(tmp_path / "jobs.results.csv")
    failed = results["out/b.mp4"]
    assert failed.status == "failed" and failed.attempts == 1
    assert str(corrupt) in failed.error
    assert results["out/a.mp4"].ok and results["out/c.mp4"].ok
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "c.mp4"]


def test_an_interrupted_batch_resumes_where_it_stopped(
    pool: RayPool, clips: list[Path], model_dir: Path, tmp_path: Path
) -> None:
    class StopAtFirst(Recorder):
        def finished(self, job: Any, outcome: Outcome) -> None:
            super().finished(job, outcome)
            if len(self.finished_jobs) == 1:
                raise KeyboardInterrupt

    rows = [(clips[i % 3], clips[(i + 1) % 3], f"out/r{i}.mp4") for i in range(4)]
    jobs_csv = write_jobs(tmp_path, rows)
    with pytest.raises(KeyboardInterrupt):
        run_on_pool(jobs_csv, pool, StopAtFirst())
    first = read_manifest(manifest_path(jobs_csv))
    assert 1 <= len(first) < 4 and all(o.ok for o in first.values())
    assert sorted(f"out/{p.name}" for p in (tmp_path / "out").iterdir()) == sorted(first)
    assert partials(tmp_path) == []

    result = invoke(
        "batch", jobs_csv, "--ray", "auto", "--workers", "1", "--cpus-per-worker", "0.5", "-c", model_dir
    )
    assert result.exit_code == 0, result.output
    assert f"{len(first)} of 4 jobs already finished earlier" in result.stdout
    assert "Ray: starting 1 worker(s)" in result.stderr
    assert "4 of 4 jobs done, 0 failed" in result.stdout
    rows_written = manifest_path(jobs_csv).read_text().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in rows_written) == [f"out/r{i}.mp4" for i in range(4)]
    for i in range(4):
        assert probe(tmp_path / "out" / f"r{i}.mp4").n_frames == FRAMES


def test_serve_runs_its_jobs_on_a_ray_worker(
    ray_instance: Any, clips: list[Path], model_dir: Path, tmp_path: Path
) -> None:
    """`serve --ray`: the service's worker process drives a Ray actor, which loads the model and dubs."""
    from fastapi.testclient import TestClient

    from stylelipsync.serve.app import create_app
    from stylelipsync.serve.service import ServeSettings

    address = ray_instance.get_runtime_context().gcs_address
    settings = ServeSettings(data_dir=tmp_path / "data", checkpoint=model_dir, ray_address=address)
    with TestClient(create_app(settings)) as client:
        files = {"video": ("face.mp4", clips[0].read_bytes()), "audio": ("speech.mp4", clips[1].read_bytes())}
        response = client.post("/v1/jobs", files=files)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + 300
        while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "done", job
        (tmp_path / "dubbed.mp4").write_bytes(client.get(f"/v1/jobs/{job_id}/video").content)
    assert probe(tmp_path / "dubbed.mp4").n_frames == FRAMES


# ----------------------------------------------------------------------------------------------- local runs


def test_a_local_batch_reads_row_options_and_goes_on_past_a_bad_row(
    clips: list[Path], model_dir: Path, tmp_path: Path
) -> None:
    rows = [(clips[0], clips[1], "out/a.mp4"), (clips[1], clips[0], "out/b.mp4")]
    jobs_csv = write_jobs(tmp_path, rows, {"fps": ["12.5", "fast"], "notes": ["x", "y"]})
    result = invoke("batch", jobs_csv, "-c", model_dir)
    assert result.exit_code == 1, result.output
    assert "ignoring the column(s) notes" in result.stderr
    assert f"[1/2] {tmp_path / 'out' / 'a.mp4'}: done (12 frames" in result.stdout
    assert (
        "[2/2]" in result.stderr
        and "line 3: column fps: fps must be a number from 1 to 120; got 'fast'" in result.stderr
    )
    assert "1 of 2 jobs done, 1 failed" in result.stdout
    assert probe(tmp_path / "out" / "a.mp4").fps == 12.5
    results = read_manifest(manifest_path(jobs_csv))
    assert results["out/a.mp4"].ok and results["out/a.mp4"].frames == 12 and not results["out/b.mp4"].ok

    again = invoke("batch", jobs_csv, "-c", model_dir)
    assert again.exit_code == 1 and "2 of 2 jobs already finished earlier (1 done, 1 failed)" in again.stdout
    assert "--retry-failed" in again.stdout


def test_ray_options_need_ray(tmp_path: Path) -> None:
    jobs_csv = write_jobs(tmp_path, [(Path("a.mp4"), Path("b.wav"), "o.mp4")])
    result = invoke("batch", jobs_csv, "--workers", "2")
    assert result.exit_code == 2 and "--workers is for Ray workers; add --ray auto" in result.output
    assert not manifest_path(jobs_csv).exists()


# ----------------------------------------------------------------------------------------------- units


def test_jobs_csv_rows_options_and_problems(tmp_path: Path) -> None:
    (tmp_path / "jobs.csv").write_text(
        "video,audio,output,keep-silence,bbox,loop\n"
        'v.mp4,a.wav,out/1.mp4,yes,"10,20,110,140",hold\n'
        "v.mp4,,out/2.mp4,,,\n"
        "v.mp4,a.wav,./out/1.mp4,,,\n"
        "v.mp4,a.wav,out/3.mp4,maybe,,\n"
        "v.mp4,a.wav,out/4.mp4,,,sideways\n"
        "/abs/v.mp4,a.wav,out/5.mp4,,,\n"
    )
    jobs = read_jobs(tmp_path / "jobs.csv", GenerateOptions(batch_size=4))
    first = jobs[0]
    assert first.problem is None and first.video == tmp_path / "v.mp4" and first.key == "out/1.mp4"
    assert first.options.keep_silence and first.options.bbox == (10, 20, 110, 140)
    assert first.options.loop == "hold" and first.options.batch_size == 4
    assert "line 3: video, audio and output must all be given" in str(jobs[1].problem)
    assert "line 4: ./out/1.mp4 is also the output of line 2" in str(jobs[2].problem)
    assert "column keep-silence: keep_silence must be true or false" in str(jobs[3].problem)
    assert "line 6" in str(jobs[4].problem) and "sideways" in str(jobs[4].problem)
    assert jobs[5].problem is None and jobs[5].video == Path("/abs/v.mp4")
    assert jobs[0].absolute().output == Path(os.path.abspath(tmp_path / "out/1.mp4"))
    (tmp_path / "bad.csv").write_text("clip,speech\nv.mp4,a.wav\n")
    with pytest.raises(MediaError, match="video,audio,output"):
        read_jobs(tmp_path / "bad.csv", GenerateOptions())


def test_manifest_appends_keeps_the_last_result_and_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "jobs.results.csv"
    with Manifest(path) as manifest:
        manifest.record(Outcome("a.mp4", "failed", error="no face,\nat all"))
        manifest.record(Outcome("a.mp4", "done", seconds=1.5, frames=25))
        manifest.record(Outcome("b.mp4", "done", frames=3, attempts=2))
    with open(path, "a") as fh:
        fh.write("c.mp4,do")  # a run killed in the middle of a line
    with Manifest(path) as manifest:
        assert set(manifest.previous) == {"a.mp4", "b.mp4"}
        assert manifest.previous["a.mp4"].frames == 25 and manifest.previous["b.mp4"].attempts == 2
        manifest.record(Outcome("c.mp4", "done", frames=1))
        with pytest.raises(Exception, match="another run of this batch"):
            Manifest(path)
    results = read_manifest(path)
    assert sorted(results) == ["a.mp4", "b.mp4", "c.mp4"]
    assert path.read_text().splitlines()[0] == "job,status,seconds,frames,error,attempts,engine"
    assert "no face, at all" in path.read_text()


def test_a_results_file_from_before_the_engine_column_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "jobs.results.csv"
    path.write_text("job,status,seconds,frames,error,attempts\nold.mp4,done,2.00,25,,1\n")
    with Manifest(path) as manifest:
        assert manifest.previous["old.mp4"].ok and manifest.previous["old.mp4"].engine == ""
        manifest.record(Outcome("new.mp4", "done", frames=5, engine="bank"))
    results = read_manifest(path)
    assert results["old.mp4"].frames == 25 and results["new.mp4"].frames == 5


def test_remove_partials_deletes_only_this_outputs_temporary_files(tmp_path: Path) -> None:
    (tmp_path / "jobs.csv").write_text("video,audio,output\nv.mp4,a.wav,clip.mp4\n")
    job = read_jobs(tmp_path / "jobs.csv", GenerateOptions())[0]
    names = [
        ".clip.0123abcd.part.mp4",
        ".clip.0123456789abcdef.probe",
        ".clip.x.0123abcd.part.mp4",
        ".clipper.0123abcd.part.mp4",
        ".clipper.0123456789abcdef.probe",
        ".clip.0123abcd.probe",
        "clip.mp4",
    ]
    for name in names:
        (tmp_path / name).write_text("")
    remove_partials(job_outputs(job))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names[2:], "jobs.csv"])


# ----------------------------------------------------------------------------------------------- engines


def test_jobs_csv_engine_and_bank_video_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "jobs.csv").write_text(
        "video,audio,output,engine,bank-video\n"
        "v.mp4,a.wav,out/1.mp4,,\n"
        "v.mp4,a.wav,out/2.mp4,STYLELIPSYNC,\n"
        "v.mp4,a.wav,out/3.mp4,bank,long.mp4\n"
        "v.mp4,a.wav,out/4.mp4,,more/a.mp4; /abs/b.jpg ;\n"
        "v.mp4,a.wav,out/5.mp4,neural,\n"
        "v.mp4,a.wav,out/6.mp4,stylelipsync,long.mp4\n"
    )
    jobs = read_jobs(tmp_path / "jobs.csv", GenerateOptions(engine="bank"))
    assert [j.options.engine if j.options else None for j in jobs] == [
        "bank", "stylelipsync", "bank", "bank", None, None
    ]  # fmt: skip
    assert jobs[2].options.bank_video == (str(tmp_path / "long.mp4"),)
    assert jobs[3].options.bank_video == (str(tmp_path / "more" / "a.mp4"), "/abs/b.jpg")
    problems = [str(job.problem) for job in jobs]
    assert "line 6: column engine: engine must be bank or stylelipsync; got 'neural'" in problems[4]
    assert "line 7: column bank_video goes with the bank engine" in problems[5]
    assert "set its engine column to bank" in problems[5]
    with_model = read_jobs(tmp_path / "jobs.csv", GenerateOptions(engine="stylelipsync"))
    assert with_model[0].options.engine == "stylelipsync" and with_model[2].options.engine == "bank"
    assert "goes with the bank engine" in str(with_model[3].problem)  # the command's engine, no row engine
    # what a Ray worker receives: absolute paths, and the engine surviving pickling
    monkeypatch.chdir(tmp_path)
    relative = read_jobs(Path("jobs.csv"), GenerateOptions(engine="bank"))[3]
    sent = pickle.loads(pickle.dumps(relative.absolute()))
    assert sent.options.engine == "bank"
    assert sent.options.bank_video == (str(tmp_path / "more" / "a.mp4"), "/abs/b.jpg")


class FakePipeline:
    """Stands in for a loaded pipeline: records how it was loaded and each call's options; renders nothing."""

    def __init__(self, path: Path | None, **loaded: Any) -> None:
        self.path, self.loaded = path, loaded
        self.calls: list[GenerateOptions] = []

    def __call__(
        self, video: Path, audio: Path, output: Path, options: GenerateOptions, progress: Any = False
    ) -> GenerateResult:
        self.calls.append(options)
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_bytes(b"mp4")
        return GenerateResult(
            output_path=Path(output),
            frames=3,
            frames_with_face=3,
            fps=25.0,
            seconds=0.1,
            width=8,
            height=8,
            source_frames=3,
            engine=str(options.engine),
        )


def test_batch_rows_choose_their_engine_and_the_results_record_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made: list[FakePipeline] = []

    def from_spec(spec: EngineSpec, device: str = "auto") -> FakePipeline:
        made.append(FakePipeline(spec.checkpoint, engine=spec.name, device=device))
        return made[-1]

    monkeypatch.setattr(LipSyncPipeline, "from_spec", staticmethod(from_spec))
    rows = [(Path("v.mp4"), Path("a.wav"), f"out/{k}.mp4") for k in range(2)]
    jobs_csv = write_jobs(tmp_path, rows, {"engine": ["", "stylelipsync"]})
    result = invoke("batch", jobs_csv)
    assert result.exit_code == 0, result.output
    [pipe] = made
    assert pipe.path is None and pipe.loaded["engine"] == "bank"  # no checkpoint: the bank by default
    assert [o.engine for o in pipe.calls] == ["bank", "stylelipsync"]
    assert "[1/2]" in result.stdout and "bank engine)" in result.stdout
    assert "stylelipsync engine)" in result.stdout
    results = read_manifest(manifest_path(jobs_csv))
    assert (results["out/0.mp4"].engine, results["out/1.mp4"].engine) == ("bank", "stylelipsync")


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--engine", "bank", "-c", "model"], "--engine bank renders from the video itself"),
        (["--engine", "gan"], "engine must be bank or stylelipsync; got 'gan'"),
    ],
)
def test_batch_refuses_a_bad_engine(tmp_path: Path, args: list[str], fragment: str) -> None:
    jobs_csv = write_jobs(tmp_path, [(Path("a.mp4"), Path("b.wav"), "o.mp4")])
    result = invoke("batch", jobs_csv, *args)
    assert result.exit_code == 2 and fragment in result.output
    assert not manifest_path(jobs_csv).exists()


def test_ray_workers_are_started_with_the_engine_spec(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`RayPool` hands its engine spec, with absolute paths, to every `DubbingWorker` it starts (checked on a
    stand-in for Ray)."""
    started: list[tuple[Any, ...]] = []

    class FakeActorClass:
        def options(self, **_: Any) -> FakeActorClass:
            return self

        def remote(self, *args: Any) -> str:
            started.append(args)
            return f"actor{len(started)}"

    class FakeRay:
        def remote(self, _cls: Any) -> FakeActorClass:
            return FakeActorClass()

    import stylelipsync.remote.ray_pool as ray_pool

    monkeypatch.setattr(ray_pool, "import_ray", FakeRay)
    pool = RayPool(2, EngineSpec("stylelipsync"), device="cpu")
    assert [pool._actor(slot) for slot in range(2)] == ["actor1", "actor2"]
    # no checkpoint: the worker loads the shipped demo model for stylelipsync
    assert [args[2] for args in started] == [EngineSpec("stylelipsync")] * 2
    monkeypatch.chdir(tmp_path)
    relative = EngineSpec.resolve(checkpoint="models/a.pth", w_avg="models/w_avg.pth", precision="bf16")
    RayPool(1, relative)._actor(0)
    sent = pickle.loads(pickle.dumps(started[-1][2]))
    here = Path.cwd()
    assert sent == EngineSpec("stylelipsync", here / "models/a.pth", here / "models/w_avg.pth", "bf16")
