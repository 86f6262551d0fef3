"""Per-stage progress of `stylelipsync serve` jobs (tracking, rendering, encoding) and the engine a job
reports: from the pipeline's `StageProgress` through the worker and the job table to the job JSON.

The pipeline and worker tests run the real bank engine on 1 s cuts of shared clips in this process; the API
test runs the real service (one worker process, a tiny random-weight network) through FastAPI's TestClient.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stylelipsync.media import VideoReader, cut_clip
from stylelipsync.pipelines import LipSyncPipeline
from stylelipsync.pipelines.engines import EngineSpec
from stylelipsync.pipelines.plan import StageProgress
from stylelipsync.serve.app import create_app
from stylelipsync.serve.db import STAGES, Job, JobStore
from stylelipsync.serve.service import ServeSettings
from stylelipsync.serve.worker import WorkerSpec, run_claimed_job

CLIP = "pcavs_Audio_Source_00086.mp4"
SPEECH = "pcavs_Audio_Source_00104.mp4"


@pytest.fixture(scope="module")
def inputs(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 1 s face clip (25 frames) and 1.5 s of another clip's speech (so the timeline loops the face)."""
    root = tmp_path_factory.mktemp("progress_media")
    speech = cut_clip(media_dir / SPEECH, root / "speech.mp4", 1.5)
    return {"clip": cut_clip(media_dir / CLIP, root / "clip.mp4", 1.0), "speech": speech}


@pytest.fixture(scope="module")
def bank() -> LipSyncPipeline:
    return LipSyncPipeline.from_pretrained(None, device="cpu", engine="bank")


class Recorder:
    """A `StageProgress` that keeps every report, in order."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, int, int]] = []

    def stage(self, name: str, done: int, total: int) -> None:
        self.reports.append((name, done, total))

    def of(self, name: str) -> list[tuple[int, int]]:
        return [(done, total) for stage, done, total in self.reports if stage == name]


def test_the_pipeline_reports_every_stage_to_a_stage_progress(
    bank: LipSyncPipeline, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """Tracking counts the source frames (25) and completes before rendering starts; rendering and encoding
    count the output frames, each up to its total, never backwards."""
    recorder = Recorder()
    assert isinstance(recorder, StageProgress)
    result = bank(inputs["clip"], inputs["speech"], tmp_path / "out.mp4", progress=recorder, loop="forward")
    assert result.engine == "bank" and result.frames > 25  # 1.5 s of speech over a 1 s clip
    assert {name for name, _, _ in recorder.reports} == set(STAGES)
    for name, total in (("tracking", 25), ("rendering", result.frames), ("encoding", result.frames)):
        seen = recorder.of(name)
        assert {t for _, t in seen} == {total}, name
        done = [d for d, _ in seen]
        assert done == sorted(done) and done[-1] == total and done[0] >= 1, name
    names = [name for name, _, _ in recorder.reports]
    assert max(i for i, n in enumerate(names) if n == "tracking") < names.index("rendering")
    assert len(VideoReader(tmp_path / "out.mp4")) == result.frames


def test_a_plain_progress_callable_still_gets_the_rendered_frames(
    bank: LipSyncPipeline, inputs: dict[str, Path], tmp_path: Path
) -> None:
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))

    assert not isinstance(progress, StageProgress)
    result = bank(inputs["clip"], inputs["clip"], tmp_path / "out.mp4", progress=progress)
    assert seen and seen[-1] == (result.frames, result.frames) == (25, 25)


class RecordingStore(JobStore):
    """The real job table, also keeping every progress report a worker writes (and optionally cancelling
    the job at the first report of a stage, as a DELETE from a client would)."""

    def __init__(self, path: Path, cancel_at: str | None = None) -> None:
        super().__init__(path)
        self.written: list[dict[str, tuple[int, int]]] = []
        self.cancel_at = cancel_at

    def report_progress(self, job_id: str, token: str, stages: dict[str, tuple[int, int]]) -> bool:
        self.written.append(dict(stages))
        if self.cancel_at in stages:
            self.cancel(job_id)
        return super().report_progress(job_id, token, stages)


def claimed(store: JobStore, video: Path, audio: Path, **options: Any) -> Job:
    folder = store.path.parent / "jobs"
    job_id = str(uuid.uuid4())
    (folder / job_id).mkdir(parents=True)
    for name, path in (("video.mp4", video), ("audio.mp4", audio)):
        (folder / job_id / name).write_bytes(path.read_bytes())
    store.add(
        Job(id=job_id, status="queued", created=time.time(), video_file="video.mp4", audio_file="audio.mp4",
            options={"engine": "bank", **options})
    )  # fmt: skip
    job = store.claim(os.getpid())
    assert job is not None and job.id == job_id
    return job


def spec_for(root: Path) -> WorkerSpec:
    return WorkerSpec(
        str(root), str(root / "jobs.sqlite3"), EngineSpec(), "cpu", 1, os.getppid(), progress_seconds=0
    )


def test_the_worker_writes_each_stage_into_the_job_row(
    bank: LipSyncPipeline, inputs: dict[str, Path], tmp_path: Path
) -> None:
    store = RecordingStore(tmp_path / "jobs.sqlite3")
    job = claimed(store, inputs["clip"], inputs["speech"], loop="forward")
    running = store.get(job.id)
    assert running is not None
    stage, stages = running.stage_progress()
    assert stage == "tracking" and [s["done"] for s in stages] == [0, 0, 0]
    assert [s["total"] for s in stages] == [None, None, None]

    run_claimed_job(bank, store, job, spec_for(tmp_path))
    first, last = store.written[0], store.written[-1]
    assert set(first) == {"tracking"} and first["tracking"][1] == 25
    assert last["tracking"] == (25, 25) and last["rendering"][0] == last["rendering"][1] > 25
    assert last["encoding"] == last["rendering"]
    tracking_done = next(i for i, w in enumerate(store.written) if w["tracking"] == (25, 25))
    assert all("rendering" not in w for w in store.written[:tracking_done])

    done = store.get(job.id)
    assert done is not None and done.status == "done" and done.engine == "bank"
    public = done.public()
    assert public["engine"] == "bank" and public["stage"] is None
    assert public["stages"] == [
        {"name": "tracking", "done": 25, "total": 25, "progress": 1.0},
        {"name": "rendering", "done": done.frames_total, "total": done.frames_total, "progress": 1.0},
        {"name": "encoding", "done": done.frames_total, "total": done.frames_total, "progress": 1.0},
    ]


def test_a_job_cancelled_while_the_face_is_tracked_stops_before_rendering(
    bank: LipSyncPipeline, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """Tracking reports progress, so its worker notices a cancellation there (no kill needed)."""
    store = RecordingStore(tmp_path / "jobs.sqlite3", cancel_at="tracking")
    job = claimed(store, inputs["clip"], inputs["speech"])
    run_claimed_job(bank, store, job, spec_for(tmp_path))
    assert len(store.written) == 1 and set(store.written[0]) == {"tracking"}
    after = store.get(job.id)
    assert after is not None and after.status == "cancelled" and after.worker_pid is None
    assert not list((tmp_path / "jobs" / job.id).glob("result-*"))


def test_report_progress_refuses_an_unknown_stage(tmp_path: Path, inputs: dict[str, Path]) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    job = claimed(store, inputs["clip"], inputs["speech"])
    assert job.run_token is not None
    with pytest.raises(ValueError, match="unknown stage"):
        store.report_progress(job.id, job.run_token, {"muxing": (1, 2)})
    assert store.report_progress(job.id, job.run_token, {"tracking": (25, 25), "rendering": (8, 40)})
    running = store.get(job.id)
    assert running is not None and (running.frames_done, running.frames_total, running.progress) == (
        8,
        40,
        0.2,
    )
    stage, stages = running.stage_progress()
    assert stage == "rendering" and [s["progress"] for s in stages] == [1.0, 0.2, 0.0]


def test_a_data_folder_of_the_previous_schema_is_migrated(tmp_path: Path) -> None:
    """A job table written by a server before per-stage progress opens, keeps its jobs and gains stages."""
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, created REAL NOT NULL, "
            "started REAL, finished REAL, progress REAL NOT NULL DEFAULT 0, frames_done INTEGER, "
            "frames_total INTEGER, error TEXT, options TEXT NOT NULL DEFAULT '{}', video_file TEXT NOT NULL, "
            "audio_file TEXT NOT NULL, video_name TEXT NOT NULL DEFAULT '', "
            "audio_name TEXT NOT NULL DEFAULT '', seconds REAL, result_file TEXT, run_token TEXT, "
            "worker_pid INTEGER, runs INTEGER NOT NULL DEFAULT 0, interruptions INTEGER NOT NULL DEFAULT 0);"
            "INSERT INTO jobs (id, status, created, options, video_file, audio_file, frames_done, "
            "frames_total, progress) "
            "VALUES ('old', 'done', 1.0, '{\"engine\": \"stylelipsync\"}', 'v.mp4', 'a.wav', 9, 9, 1);"
            "PRAGMA user_version=1;"
        )
    conn.close()
    old = JobStore(path).get("old")
    assert old is not None and old.status == "done" and old.stages == {}
    public = old.public()
    assert public["engine"] == "stylelipsync" and [s["progress"] for s in public["stages"]] == [1.0, 1.0, 1.0]
    assert [s["total"] for s in public["stages"]] == [None, 9, 9]  # source frames tracked: never reported
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


# ------------------------------------------------------------------------------------------------- the API


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The service with one worker; its default engine is the network (a tiny random-weight model)."""
    settings = ServeSettings(data_dir=tmp_path_factory.mktemp("progress_data"), checkpoint=tiny_model_dir)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def wait_done(client: TestClient, job_id: str, timeout: float = 300) -> list[dict[str, Any]]:
    """Every state the job showed while polled, the last one finished."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        seen.append(job)
        if job["status"] in ("done", "failed", "cancelled"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {seen[-1]}")


def test_the_job_json_has_each_stage_and_the_engine_that_ran(
    client: TestClient, inputs: dict[str, Path]
) -> None:
    files = {
        "video": ("clip.mp4", inputs["clip"].read_bytes()),
        "audio": ("speech.mp4", inputs["speech"].read_bytes()),
    }
    network = client.post("/v1/jobs", files=files)
    bank = client.post("/v1/jobs", files=files, data={"engine": "bank"})
    assert network.status_code == bank.status_code == 202, (network.text, bank.text)
    queued = client.get(f"/v1/jobs/{bank.json()['id']}").json()
    if queued["status"] == "queued":  # one worker: the second job waits for the first
        assert queued["stage"] is None and [s["total"] for s in queued["stages"]] == [None, None, None]
    for response, engine in ((network, "stylelipsync"), (bank, "bank")):
        states = wait_done(client, response.json()["id"])
        final = states[-1]
        assert final["status"] == "done", final
        assert final["engine"] == engine and final["options"]["engine"] == engine and final["stage"] is None
        frames = final["frames_total"]
        assert [(s["name"], s["done"], s["total"], s["progress"]) for s in final["stages"]] == [
            ("tracking", 25, 25, 1.0),
            ("rendering", frames, frames, 1.0),
            ("encoding", frames, frames, 1.0),
        ]
        for name in STAGES:  # each stage's progress only grows while the job is polled
            series = [s["progress"] for state in states for s in state["stages"] if s["name"] == name]
            assert series == sorted(series), (name, series)
        for state in states:
            if state["status"] == "running":
                assert state["stage"] in STAGES
                assert state["progress"] == next(
                    s["progress"] for s in state["stages"] if s["name"] == "rendering"
                )
    listed = {j["id"]: j for j in client.get("/v1/jobs").json()["jobs"]}
    assert listed[bank.json()["id"]]["engine"] == "bank" and len(listed[bank.json()["id"]]["stages"]) == 3
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"name", "done", "total", "progress"} <= set(schema["StageOut"]["properties"])
    assert {"stage", "stages", "engine"} <= set(schema["JobOut"]["properties"])
