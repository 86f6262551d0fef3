"""`probe` and input errors on synthetic and real media."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from stylelipsync.errors import MediaError
from stylelipsync.media import VideoReader, is_image_path, load_audio, probe, read_image
from test_media_synth import frame_image, tone, write_audio, write_video


def test_probe_constant_rate_video_with_audio(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 30, 30, (160, 96), audio=tone(1.0, 44100))
    info = probe(path)
    assert info.has_video and info.has_audio and not info.is_image
    assert (info.width, info.height) == (160, 96)
    assert info.fps == pytest.approx(30.0)
    assert not info.is_vfr
    assert info.n_frames == 30
    assert info.video_duration == pytest.approx(1.0, abs=1e-3)
    assert info.sample_rate == 44100 and info.channels == 2
    assert info.rotation == 0


def test_probe_ntsc_rate(tmp_path: Path) -> None:
    path = write_video(tmp_path / "ntsc.mp4", 12, Fraction(30000, 1001))
    info = probe(path)
    assert info.fps == pytest.approx(29.97, abs=1e-3)
    assert info.video_duration == pytest.approx(12 * 1001 / 30000, abs=1e-3)


def test_probe_rotated_video_reports_displayed_size(tmp_path: Path) -> None:
    path = write_video(tmp_path / "rot.mp4", 3, 25, (160, 96), rotation=90)
    info = probe(path)
    assert (info.width, info.height) == (96, 160)
    assert info.rotation == 270  # 90° counter-clockwise = 270° clockwise


def test_probe_variable_frame_rate(tmp_path: Path) -> None:
    path = write_video(tmp_path / "vfr.mp4", 20, 30, pts=[i + i // 2 for i in range(20)])
    info = probe(path)
    assert info.is_vfr
    assert info.nominal_fps == pytest.approx(30.0)
    assert info.fps < 25


def test_probe_audio_only_and_no_audio(tmp_path: Path) -> None:
    wav = write_audio(tmp_path / "a.wav", tone(0.5, 48000), 48000, "pcm_s16le")
    info = probe(wav)
    assert info.has_audio and not info.has_video
    assert info.audio_duration == pytest.approx(0.5, abs=1e-3)
    silent = probe(write_video(tmp_path / "silent.mp4", 5))
    assert silent.has_video and not silent.has_audio


def _jpeg_with_orientation(image: np.ndarray, orientation: int) -> bytes:
    """JPEG bytes with a minimal EXIF APP1 segment holding only the Orientation tag."""
    ok, encoded = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = encoded.tobytes()
    return data[:2] + app1 + data[2:]


def test_image_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = frame_image(0, 64, 48)
    image[-16:, -16:] = (255, 0, 0)  # red marker bottom-right
    path = tmp_path / "photo.JPG"
    path.write_bytes(_jpeg_with_orientation(image, 6))  # 6: rotate 90° clockwise to display
    assert is_image_path(path)
    upright = read_image(path)
    assert upright.shape == (64, 48, 3)
    # Clockwise quarter turn: bottom-right goes to bottom-left.
    assert upright[-8:, :8, 0].mean() > 200 and upright[-8:, :8, 1].mean() < 60
    info = probe(path)
    assert info.is_image and (info.width, info.height) == (48, 64) and info.n_frames == 1
    frames = list(VideoReader(path))
    assert len(frames) == 1 and frames[0].image.shape == (64, 48, 3)


@pytest.mark.parametrize("suffix", [".png", ".webp", ".bmp"])
def test_other_image_types(tmp_path: Path, suffix: str) -> None:
    image = frame_image(3, 40, 30)
    path = tmp_path / f"img{suffix}"
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if suffix == ".webp" else []
    assert cv2.imwrite(str(path), image[:, :, ::-1], params)
    assert np.array_equal(read_image(path), image)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.mp4"
    for call in (probe, VideoReader, load_audio, read_image):
        with pytest.raises(MediaError, match=r"nope\.mp4.*not found"):
            call(path)


def test_folder_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="folder"):
        probe(tmp_path)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(MediaError, match=r"empty\.mp4.*empty"):
        probe(empty)


def test_random_bytes_are_not_media(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match=r"garbage\.mp4"):
        probe(path)
    with pytest.raises(MediaError, match=r"garbage\.mp4"):
        load_audio(path)
    bad_image = tmp_path / "garbage.png"
    bad_image.write_bytes(b"\x89PNG not really")
    with pytest.raises(MediaError, match=r"garbage.png.*not a readable image"):
        read_image(bad_image)


def test_truncated_mp4(tmp_path: Path) -> None:
    source = write_video(tmp_path / "whole.mp4", 50, audio=tone(2.0, 44100))
    cut = tmp_path / "cut.mp4"
    data = source.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"cut.mp4.*(damaged|truncated)"):
        probe(cut)
    with pytest.raises(MediaError, match=r"cut\.mp4"):
        load_audio(cut)


def test_audio_file_is_not_a_video(tmp_path: Path) -> None:
    wav = write_audio(tmp_path / "speech.wav", tone(0.2, 16000), 16000, "pcm_s16le")
    with pytest.raises(MediaError, match=r"speech.wav.*no video stream"):
        VideoReader(wav)


def test_probe_real_files_match_manifest(media_dir: Path) -> None:
    rows = {}
    for line in (media_dir / "MANIFEST.tsv").read_text().splitlines()[1:]:
        cols = line.split("\t")
        rows[cols[0]] = cols
    for name in ("vrt_face_1.mp4", "tpsmm_driving.mp4", "styletalk_feifeili_clip3.mp4", "edtalk_teaser.mp3"):
        info = probe(media_dir / name)
        _, _, _, _, _, duration, width, height, fps, rate, has_audio = rows[name][:11]
        assert info.has_audio == (has_audio == "yes"), name
        assert info.duration == pytest.approx(float(duration), abs=0.1), name
        if width:
            assert (info.width, info.height) == (int(width), int(height)), name
            assert info.fps == pytest.approx(float(fps), rel=1e-3), name
        if rate:
            assert info.sample_rate == int(rate), name
    vfr = probe(media_dir / "vrt_face_1.mp4")
    assert vfr.is_vfr and vfr.nominal_fps == pytest.approx(30.0)
