"""`VideoWriter`: round trip, A/V sync and length, odd sizes, repeatability, temp-file handling, protected
inputs, errors."""

from __future__ import annotations

import gc
import hashlib
import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av.logging
import numpy as np
import pytest

from stylelipsync.errors import OutputError
from stylelipsync.media import VideoReader, VideoWriter, load_audio, probe, x264_cpu
from test_media_synth import frame_image, noise_bursts, psnr, read_index, write_video

SR = 16000


def _write(path: Path, n: int, fps: float | Fraction = 25, size: tuple[int, int] = (160, 96), **kw) -> Path:
    with VideoWriter(path, fps, size[0], size[1], **kw) as writer:
        for k in range(n):
            writer.write(frame_image(k, *size))
    return path


def _lag_ms(decoded: np.ndarray, reference: np.ndarray) -> float:
    n = min(len(decoded), len(reference))
    corr = np.correlate(decoded[:n], reference[:n], "full")
    return (int(np.argmax(corr)) - (n - 1)) * 1000.0 / SR


def test_round_trip_frames_size_rate_quality(tmp_path: Path) -> None:
    path = _write(tmp_path / "out.mp4", 50, 25, crf=18)
    info = probe(path)
    assert (info.width, info.height, info.fps, info.n_frames) == (160, 96, 25.0, 50)
    assert info.video_duration == pytest.approx(2.0, abs=1e-3)
    assert info.video_codec == "h264" and not info.has_audio
    frames = list(VideoReader(path))
    assert len(frames) == 50
    for k, frame in enumerate(frames):
        assert read_index(frame.image) == k
        assert psnr(frame.image, frame_image(k)) >= 35.0, k
    assert not [p for p in tmp_path.iterdir() if p.name != "out.mp4"]


def test_audio_is_muxed_in_sync_and_cut_to_the_video(tmp_path: Path) -> None:
    audio = noise_bursts(3.0, SR)  # 1 s longer than the video
    path = _write(tmp_path / "av.mp4", 50, 25, audio=audio, sample_rate=SR)
    info = probe(path)
    assert info.has_audio and info.audio_codec == "aac" and info.sample_rate == SR
    assert info.duration == pytest.approx(2.0, abs=1e-3)
    assert info.audio_duration == pytest.approx(2.0, abs=1e-3)
    decoded = load_audio(path)
    assert abs(len(decoded) - 2 * SR) <= SR // 25  # within a frame (in practice exact)
    assert abs(_lag_ms(decoded, audio[: 2 * SR])) <= 1.0
    assert np.corrcoef(decoded[: 2 * SR - 2048], audio[: 2 * SR - 2048])[0, 1] > 0.9
    first_video = next(iter(VideoReader(path)))
    assert first_video.time == 0.0


def test_short_audio_is_padded_with_silence(tmp_path: Path) -> None:
    audio = noise_bursts(0.5, SR)
    path = _write(tmp_path / "pad.mp4", 25, 25, audio=audio, sample_rate=SR)
    decoded = load_audio(path)
    assert abs(len(decoded) - SR) <= 16
    assert abs(_lag_ms(decoded[: SR // 2], audio)) <= 1.0
    assert np.abs(decoded[SR // 2 + 2048 :]).max() < 1e-3


def test_stereo_audio_and_ntsc_rate(tmp_path: Path) -> None:
    rate = 48000
    left = noise_bursts(1.0, rate, seed=1)
    stereo = np.stack([left, -left], axis=1)  # (samples, channels)
    path = _write(tmp_path / "ntsc.mp4", 30, 29.97, audio=stereo, sample_rate=rate)
    info = probe(path)
    assert info.fps == pytest.approx(30000 / 1001, rel=1e-6)
    assert info.channels == 2 and info.sample_rate == rate
    assert info.video_duration == pytest.approx(30 * 1001 / 30000, abs=1e-3)
    assert info.audio_duration == pytest.approx(30 * 1001 / 30000, abs=1e-3)


@pytest.mark.parametrize("size", [(161, 97), (160, 97), (97, 160)])
def test_odd_sizes_are_padded_to_even(tmp_path: Path, size: tuple[int, int]) -> None:
    path = _write(tmp_path / "odd.mp4", 5, 25, size)
    width, height = size
    info = probe(path)
    assert (info.width, info.height) == (width + width % 2, height + height % 2)
    for k, frame in enumerate(VideoReader(path)):
        assert psnr(frame.image[:height, :width], frame_image(k, width, height)) >= 35.0
        # The extra row/column repeats the edge instead of adding a black line.
        edge = frame.image[-1].astype(int) - frame.image[-2].astype(int) if height % 2 else None
        assert edge is None or np.abs(edge).mean() < 6
        edge = frame.image[:, -1].astype(int) - frame.image[:, -2].astype(int) if width % 2 else None
        assert edge is None or np.abs(edge).mean() < 6


def test_the_encoder_uses_the_instruction_sets_x264_detects_less_avx512() -> None:
    level = av.logging.get_level()
    names = x264_cpu.detected()
    assert av.logging.get_level() == level, "the probe must leave PyAV's log level as it was"
    assert names, "x264 no longer logs the instruction sets it uses: the AVX-512 workaround is off"
    asm = x264_cpu.encoder_asm()
    if "AVX512" in names:
        assert asm is not None and asm.split(",") == [n for n in names if n != "AVX512"]
    else:
        assert asm is None


def test_the_same_frames_encode_to_the_same_file_whatever_the_process_did_before(
    media_dir: Path, tmp_path: Path
) -> None:
    """x264's AVX-512 MB-tree read memory it never wrote on pictures not a multiple of 128 pixels wide, so on
    such a CPU a 224² clip encoded to a different file when other work (here: blocks of random bytes
    allocated and freed between frames, as the renderer does) had left other bytes in the heap (see
    `media.x264_cpu`). On a CPU without AVX-512 the encoder is repeatable with or without the fix."""
    reader = VideoReader(media_dir / "pcavs_Audio_Source_00104.mp4")  # 224², a man talking
    try:
        frames = [frame.image for frame, _ in zip(reader, range(60), strict=False)]
    finally:
        reader.close()
    files = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        path = tmp_path / f"{seed}.mp4"
        with VideoWriter(path, 25, 224, 224) as writer:
            for frame in frames:
                writer.write(frame)
                sizes = rng.integers(4096, 1 << 18, 8)
                junk = [rng.integers(0, 256, int(n), np.uint8).tobytes() for n in sizes]
                del junk
        files.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert files[1] == files[0] and files[2] == files[0]


def test_exception_leaves_no_output_and_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "broken.mp4"
    audio = noise_bursts(1, SR)
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(out, 25, 160, 96, audio=audio) as w:
        for k in range(10):
            w.write(frame_image(k))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failed_run_keeps_the_previous_output(tmp_path: Path) -> None:
    out = _write(tmp_path / "keep.mp4", 5)
    before = out.read_bytes()
    with pytest.raises(ValueError, match="uint8"), VideoWriter(out, 25, 160, 96) as w:
        w.write(frame_image(0))
        w.write(np.zeros((96, 160, 3), np.float32))  # wrong dtype
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]
    _write(out, 7)
    assert probe(out).n_frames == 7  # a successful run replaces it


def test_closing_without_success_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="no frames"), VideoWriter(tmp_path / "empty.mp4", 25, 64, 48):
        pass
    writer = VideoWriter(tmp_path / "aborted.mp4", 25, 64, 48)
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.abort()
    forgotten = VideoWriter(tmp_path / "forgotten.mp4", 25, 64, 48)
    forgotten.write(np.zeros((48, 64, 3), np.uint8))
    del forgotten
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_an_input(tmp_path: Path) -> None:
    source = write_video(tmp_path / "in.mp4", 5)
    before = source.read_bytes()
    (tmp_path / "sub").mkdir()
    for spelling in (source, tmp_path / "sub" / ".." / "in.mp4"):
        with pytest.raises(OutputError, match=r"in\.mp4.*input"):
            VideoWriter(spelling, 25, 64, 48, protect=[source])
    link = tmp_path / "link.mp4"
    link.symlink_to(source)
    with pytest.raises(OutputError, match="input"):
        VideoWriter(link, 25, 64, 48, protect=[source])
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "link.mp4", "sub"]


def test_output_folder_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=r"file/out\.mp4: cannot write the video .*file"):
        VideoWriter(blocker / "out.mp4", 25, 64, 48)
    assert blocker.read_text() == "not a folder"
    # Root writes into any folder whatever its mode (CI runs as root), but not into sysfs.
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
    else:
        locked = Path("/sys")
    assert locked.is_dir()
    with pytest.raises(OutputError, match=r"out\.mp4: the output folder is not writable"):
        VideoWriter(locked / "out.mp4", 25, 64, 48)
    assert not (locked / "out.mp4").exists()
    with pytest.raises(OutputError, match=r"\.mp4"):
        VideoWriter(tmp_path / "out.gif", 25, 64, 48)


def test_disk_full_is_an_output_error_and_cleans_up(tmp_path: Path) -> None:
    """A file-size limit makes writes fail like a full disk (EFBIG); run it in a child process."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np
        from stylelipsync.errors import OutputError
        from stylelipsync.media import VideoWriter
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
        rng = np.random.default_rng(0)
        try:
            with VideoWriter({str(tmp_path / "big.mp4")!r}, 25, 256, 256, crf=0, preset="ultrafast") as w:
                for _ in range(40):
                    w.write(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
        except OutputError as exc:
            print("OutputError:", exc)
            sys.exit(0)
        sys.exit(1)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "big.mp4: disk full" in result.stdout
    assert list(tmp_path.iterdir()) == []
