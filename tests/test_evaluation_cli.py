"""`stylelipsync evaluate` end to end: pairing, table, JSON + CSV, plot, unavailable metrics, leak columns."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from stylelipsync.cli import cli
from stylelipsync.errors import MediaError
from stylelipsync.evaluation import runner
from stylelipsync.evaluation.audio_to_mouth import AudioToMouth
from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.evaluation.jobs import make_jobs
from stylelipsync.evaluation.lse import lse_score
from stylelipsync.evaluation.mouth_opening import mouth_opening
from stylelipsync.evaluation.offline_sync import energy_sync, predicted_sync
from stylelipsync.evaluation.syncnet_v2 import SyncNetV2, load_syncnet_v2
from stylelipsync.media import load_audio

CLIP = "deepavsr_00006.mp4"


def test_evaluate_command_end_to_end(media_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(SyncNetV2().state_dict(), tmp_path / "syncnet_v2.model")
    out = tmp_path / "res" / "results.json"
    clip, weights = str(media_dir / CLIP), str(tmp_path / "syncnet_v2.model")
    args = [
        "evaluate", "-g", clip, "-r", clip, "--silent", clip, "-m", "lse,sync,csim,psnr,ssim,lmd,lpips",
        "--syncnet-weights", weights, "--cache-dir", str(tmp_path / "cache"), "--max-id-frames", "3",
        "--out", str(out), "--plot", str(tmp_path / "plot.png"),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "mean ± std" in result.output and "lse_d" in result.output
    doc = json.loads(out.read_text())
    values = doc["videos"][0]["values"]
    assert set(doc["unavailable"]) == {"lpips", "csim_arcface"}
    assert "--lpips-weights" in doc["unavailable"]["lpips"]
    assert values["psnr"] == 100.0 and values["ssim"] == pytest.approx(1.0)
    assert values["csim_dlib"] == pytest.approx(1.0) and values["lmd"] == pytest.approx(0.0)
    # The table reports each metric of this clip, as the library computes it for the same inputs.
    lse = lse_score(load_syncnet_v2(weights), clip, mode="wild", cache_dir=tmp_path / "cache")
    assert (values["lse_d"], values["lse_c"], values["av_offset"]) == pytest.approx(
        (lse.lse_d, lse.lse_c, lse.av_offset), rel=1e-5
    )
    track = track_video(clip, cache_dir=tmp_path / "cache")
    mouth, wave = mouth_opening(track.raw, track.detected), load_audio(clip, 16000)
    energy = energy_sync(mouth, wave, 16000, track.fps)
    predicted = predicted_sync(mouth, wave, 16000, track.fps, AudioToMouth.default())
    assert (values["sync_energy"], values["sync_energy_lag"]) == pytest.approx(
        (energy.correlation, energy.lag)
    )
    assert (values["sync_pred"], values["sync_pred_lag"]) == pytest.approx(
        (predicted.correlation, predicted.lag)
    )
    assert values["leak_ratio"] == pytest.approx(1.0)  # the same video stands in for the silent one
    assert doc["summary"]["psnr"]["n"] == 1
    rows = list(csv.reader(out.with_suffix(".csv").open()))
    assert rows[0][:4] == ["video", "generated", "reference", "audio"] and "csim_dlib" in rows[0]
    assert [r[0] for r in rows[1:]] == ["deepavsr_00006", "mean", "std"]
    assert (tmp_path / "plot.png").stat().st_size > 10_000


def test_evaluate_without_weights_reports_lse_unavailable(media_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = [
        "evaluate",
        "-g",
        str(media_dir / CLIP),
        "-m",
        "lse,sync",
        "--cache-dir",
        str(tmp_path),
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "lse: unavailable" in result.stderr and "syncnet_v2.model" in result.stderr
    doc = json.loads(out.read_text())
    assert "lse" in doc["unavailable"] and doc["videos"][0]["values"].get("lse_d") is None
    assert "lse_d" not in doc["summary"] and "sync_pred" in doc["summary"]


def test_unknown_metric_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["evaluate", "-g", "x.mp4", "-m", "lse,foo"])
    assert result.exit_code == 2 and "foo" in result.output


def test_job_pairing(tmp_path: Path) -> None:
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir(), ref.mkdir()
    for name in ("b.mp4", "a.mp4"):
        (gen / name).touch()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (ref / name).touch()
    (ref / "notes.txt").touch()
    jobs = make_jobs(
        [gen], [ref], [tmp_path / "speech.wav"] if (tmp_path / "speech.wav").touch() is None else []
    )
    assert [(j.name, j.reference.name if j.reference else None) for j in jobs] == [
        ("a", "a.mp4"),
        ("b", "b.mp4"),
    ]
    assert all(j.audio == tmp_path / "speech.wav" for j in jobs)
    speakers = make_jobs([gen], speaker=[ref / "c.mp4"])
    assert [j.speaker for j in speakers] == [ref / "c.mp4"] * 2 and speakers[0].audio is None
    with pytest.raises(MediaError, match="cannot pair"):
        make_jobs([gen], [ref / "a.mp4", ref / "c.mp4", ref / "notes.txt"])
    with pytest.raises(MediaError, match="no such file"):
        make_jobs([tmp_path / "missing"])


def test_speaker_video_adds_sync_speaker(
    media_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--speaker-video: mouth vs the driving speaker's real mouth; a video against itself is 1 at lag 0.
    One speaker video shared by every job is tracked once at each frame rate, not once per job."""
    tracked: list[tuple[Path, float | None]] = []

    def counting_track(video: Path, **kwargs: Any) -> Any:
        tracked.append((Path(video), kwargs.get("fps")))
        return track_video(video, **kwargs)

    monkeypatch.setattr(runner, "track_video", counting_track)
    other = media_dir / "deepavsr_00001.mp4"
    out = tmp_path / "r.json"
    args = [
        "evaluate", "-g", str(media_dir / CLIP), "-g", str(other), "--speaker-video", str(media_dir / CLIP),
        "-m", "sharpness", "--cache-dir", str(tmp_path / "cache"), "-o", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "sync_speaker" in result.output
    same, different = (v["values"] for v in json.loads(out.read_text())["videos"])
    assert same["sync_speaker"] == pytest.approx(1.0) and same["sync_speaker_lag"] == 0
    assert -1 <= different["sync_speaker"] < 0.99 and abs(different["sync_speaker_lag"]) <= 2
    speaker_calls = [t for t in tracked if t[1] is not None]
    assert len(speaker_calls) == len(set(speaker_calls)) == 1, tracked
