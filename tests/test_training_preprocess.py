"""`stylelipsync preprocess`: dataset format, resume, failure recording and source discovery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stylelipsync.cli import cli
from stylelipsync.training.preprocess import collect_sources

MAX_FRAMES = 30
SIZE = 64


@pytest.fixture(scope="module")
def processed(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    root = tmp_path_factory.mktemp("pre")
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    filelist = root / "list.txt"
    feifei = media_dir / "styletalk_feifeili_clip3"
    filelist.write_text(
        f"{media_dir / 'deepavsr_00001.mp4'}\n{feifei}.mp4\t{feifei}.wav\tfeifei\n{corrupt}\n"
    )
    out = root / "dataset"
    args = [
        "preprocess",
        "--input",
        str(filelist),
        "--output",
        str(out),
        "--size",
        str(SIZE),
        "--max-frames",
        str(MAX_FRAMES),
        "--quiet",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out, filelist, args


def test_dataset_format(processed: tuple[Path, Path, object]) -> None:
    out, _, _ = processed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["size"] == SIZE and manifest["fps"] == 25
    ids = {c["id"]: c for c in manifest["clips"]}
    assert set(ids) == {"deepavsr_00001", "styletalk_feifeili_clip3"}
    assert ids["styletalk_feifeili_clip3"]["person"] == "feifei"
    assert ids["deepavsr_00001"]["person"] == "deepavsr_00001"
    assert all(c["status"] == "ok" and c["num_frames"] == MAX_FRAMES for c in manifest["clips"])
    assert [f["source"].endswith("corrupt.mp4") for f in manifest["failures"]] == [True]
    for clip_id in ids:
        d = out / "clips" / clip_id
        t = MAX_FRAMES
        frames = np.load(d / "frames.npy", mmap_mode="r")
        masks = np.load(d / "masks.npy")
        landmarks = np.load(d / "landmarks.npy")
        valid = np.load(d / "valid.npy")
        audio = np.load(d / "audio.npy")
        mel = np.load(d / "mel.npy")
        assert frames.dtype == np.uint8 and frames.shape == (t, SIZE, SIZE, 3)
        assert masks.dtype == np.uint8 and masks.shape == (t, SIZE, SIZE)
        assert set(np.unique(masks)) <= {0, 255} and (masks[valid] > 0).any()
        assert landmarks.dtype == np.float32 and landmarks.shape == (t, 478, 3)
        assert valid.dtype == bool and valid.shape == (t,) and valid.sum() >= t - 2
        assert np.isfinite(landmarks[valid]).all()
        lips_y = landmarks[valid][:, 13, 1]
        assert ((lips_y > SIZE * 0.5) & (lips_y < SIZE)).all()
        assert audio.dtype == np.float32 and audio.shape == (t * 640,) and np.abs(audio).max() > 0.01
        assert mel.dtype == np.float32 and mel.shape == (4 * t + 1, 80)
        meta = json.loads((d / "meta.json").read_text())
        assert {"fps", "num_frames", "person", "source", "size"} <= set(meta)
        assert meta["num_frames"] == t and meta["size"] == SIZE and len(meta["mel_mean"]) == 80
    assert not list((out / "clips").glob(".*.tmp"))


def test_resume_skips_finished_clips(processed: tuple[Path, Path, object]) -> None:
    out, _, args = processed
    frames = out / "clips" / "deepavsr_00001" / "frames.npy"
    before = frames.stat().st_mtime_ns
    result = CliRunner().invoke(cli, args)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    assert frames.stat().st_mtime_ns == before
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_clips"] == 2 and manifest["num_failures"] == 1


def test_sources_from_shared_manifest(media_dir: Path) -> None:
    items = collect_sources(media_dir, media_dir / "MANIFEST.tsv")
    assert len(items) == 36 and len({i.person for i in items}) == 30
    by_id = {i.id: i for i in items}
    assert by_id["styletalk_Obama_clip1"].person == "man_suit_2"
    assert by_id["styletalk_Obama_clip1"].audio == media_dir / "styletalk_Obama_clip1.wav"
    assert by_id["edtalk_mouth_source"].audio == media_dir / "edtalk_mouth_source.wav"
    assert by_id["deepavsr_00001"].audio is None


def test_voxceleb_layout(tmp_path: Path) -> None:
    for rel in (
        "id00012/abc/00001.mp4",
        "id00012/abc/00002.mp4",
        "id00099/xyz/00001.mp4",
        "hdtf/WDA_X_000.mp4",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    items = {i.id: i.person for i in collect_sources(tmp_path)}
    assert items == {
        "id00012__abc__00001": "id00012",
        "id00012__abc__00002": "id00012",
        "id00099__xyz__00001": "id00099",
        "WDA_X_000": "WDA_X_000",
    }


def test_scene_cut_detector() -> None:
    from stylelipsync.training.preprocess import SceneCutDetector

    detector = SceneCutDetector(threshold=0.5)
    rng = np.random.default_rng(0)
    for t in range(60):
        base = np.array([200, 40, 40] if t < 35 else [30, 60, 220], np.uint8)
        noise = rng.integers(0, 20, (48, 48, 3), dtype=np.uint8)
        detector.observe(np.clip(base + noise, 0, 255).astype(np.uint8))
    assert detector.cuts == [35]
    assert detector.segments(60, min_frames=10) == [(0, 35), (35, 60)]
    assert detector.segments(60, min_frames=30) == [(0, 35)]


def test_scene_cut_mode_writes_segments_and_resumes(media_dir: Path, tmp_path: Path) -> None:
    from stylelipsync.training.preprocess import PreprocessOptions, is_done, preprocess

    options = PreprocessOptions(size=SIZE, max_frames=MAX_FRAMES, scene_cut=True, min_segment_frames=10)
    source = media_dir / "deepavsr_00001.mp4"
    manifest = preprocess(source, tmp_path, options=options, progress=False)
    assert [c["id"] for c in manifest["clips"]] == ["deepavsr_00001-s00"]
    assert all(is_done(item, tmp_path, scene_cut=True) for item in collect_sources(source))
