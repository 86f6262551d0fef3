"""Bounded memory: generating 60 s peaks at most 1.2× the resident memory of generating 10 s.

The README promises that memory stays bounded however long the video. Each case runs `stylelipsync generate`
(the default bank engine) in its own process, which reports its peak resident set size (VmHWM) at exit. To
stay fast the clip is small and slow: a real face at 320², 5 frames/s (50 and 300 frames), with 10 s and
60 s of real speech; the full-rate, full-size measurement is `benchmarks/bench_generate_memory.py`.

Measured here (2 shared cores, other jobs running): 628–640 MiB for 10 s, 711–720 MiB for 60 s (×1.11–1.15).
Most of the growth is the speech's features, computed over the whole file at once (the audio → mouth-shape
prediction, about 0.8 MB per second of speech, and voice activity, about 0.4 MB/s). A renderer that kept one
frame's masks per source frame (0.5 MB each) reached 852–854 MiB (×1.32–1.33).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import soundfile as sf

from stylelipsync.media import VideoReader, VideoWriter, load_audio

CLIP = "dreamtalk_M030_front_neutral_level1_001.mp4"  # 256², 94 frames, a man talking
SPEECH = "musetalk_eng.wav"  # 60 s of speech
FPS, SIDE = 5.0, 320
CHILD = """
import atexit, os, sys

def report():
    with open(os.environ["PEAK_REPORT"], "w") as fh:
        fh.write(open("/proc/self/status").read())

atexit.register(report)
sys.argv = ["stylelipsync", *sys.argv[1:]]
from stylelipsync.cli import main
main()
"""


def peak_mib(tmp_path: Path, video: Path, audio: Path) -> float:
    """VmHWM (MiB) of a `stylelipsync generate` process dubbing `video` with `audio`."""
    report, output = tmp_path / f"{video.stem}.status", tmp_path / f"{video.stem}_out.mp4"
    args = ["generate", "-v", str(video), "-a", str(audio), "-o", str(output)]
    env = {**os.environ, "PEAK_REPORT": str(report)}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert output.is_file()
    peak = re.search(r"VmHWM:\s+(\d+) kB", report.read_text())
    assert peak is not None
    return int(peak.group(1)) / 1024


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_memory_of_60_s_is_within_1_2x_of_10_s(media_dir: Path, tmp_path: Path) -> None:
    frames = [cv2.resize(f.image, (SIDE, SIDE)) for f in VideoReader(media_dir / CLIP)]
    loop = frames + frames[-2:0:-1]
    wave = load_audio(media_dir / SPEECH, 16000)
    peaks = {}
    for seconds in (10, 60):
        video, audio = tmp_path / f"clip_{seconds}s.mp4", tmp_path / f"speech_{seconds}s.wav"
        with VideoWriter(video, FPS, SIDE, SIDE) as out:
            for k in range(round(seconds * FPS)):
                out.write(loop[k % len(loop)])
        assert len(wave) >= seconds * 16000
        sf.write(str(audio), wave[: seconds * 16000], 16000, subtype="PCM_16")
        peaks[seconds] = peak_mib(tmp_path, video, audio)
    print(f"\npeak RSS: 10 s {peaks[10]:.0f} MiB, 60 s {peaks[60]:.0f} MiB, ×{peaks[60] / peaks[10]:.3f}")
    assert peaks[60] <= 1.2 * peaks[10], peaks
