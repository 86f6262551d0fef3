"""The README's main command, read from the README and run as written, on a 3 s cut of its clip and speech.

Only the `generate` part is run (the venv and install before it are what this suite already runs in), with
the installed `stylelipsync` console script; the `--video`, `--audio` and `--output` values are swapped for
a cut of the same files and a temporary output, every other word is the README's. The output must play
(every frame decodes), last as long as the speech, carry that speech, and show a changed mouth wherever
there is speech while the rest of the frame stays the input's.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from stylelipsync.audio.vad import voice_activity
from stylelipsync.face.landmarks import LIPS_OUTER
from stylelipsync.face.track import track_face
from stylelipsync.media import VideoReader, cut_clip, load_audio, probe

REPO = Path(__file__).resolve().parents[1]
SECONDS = 3.0
SCRIPT = Path(sys.executable).with_name("stylelipsync")


def main_command() -> list[str]:
    """The words of the `stylelipsync generate` step of the README's main command."""
    lines = (REPO / "README.md").read_text().splitlines()
    marker = lines.index("<!-- main-command -->")
    steps = [shlex.split(step) for step in lines[marker + 1].split("&&")]
    [generate] = [s for s in steps if len(s) > 1 and s[0].endswith("stylelipsync") and s[1] == "generate"]
    return generate


def option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def replaced(words: list[str], values: dict[str, str]) -> list[str]:
    """`words` with the value after each option in `values` replaced."""
    out = list(words)
    for name, value in values.items():
        out[out.index(name) + 1] = value
    return out


def test_readme_main_command_dubs_a_cut_of_its_clip(tmp_path: Path) -> None:
    words = main_command()
    assert words[0] == ".venv/bin/stylelipsync" and "--checkpoint" not in words and "-c" not in words
    video = cut_clip(REPO / option(words, "--video"), tmp_path / "clip.mp4", SECONDS)
    speech = load_audio(REPO / option(words, "--audio"), 16000)[: round(SECONDS * 16000)]
    sf.write(str(tmp_path / "speech.wav"), speech, 16000, subtype="PCM_16")
    output = tmp_path / "out.mp4"
    args = replaced(
        words[1:], {"--video": str(video), "--audio": str(tmp_path / "speech.wav"), "--output": str(output)}
    )
    command = (
        [str(SCRIPT)]
        if SCRIPT.is_file()
        else [sys.executable, "-c", "from stylelipsync.cli import main; main()"]
    )
    result = subprocess.run([*command, *args], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "bank engine" in result.stdout, result.stdout[-2000:]

    # It plays, as long as the speech, with the speech.
    info = probe(output)
    assert info.has_video and info.has_audio and abs(info.duration - SECONDS) < 0.1
    dubbed = [f.image for f in VideoReader(output)]
    source = [f.image for f in VideoReader(video)]
    assert len(dubbed) == round(SECONDS * info.fps) == len(source)
    heard = load_audio(output, 16000)[: len(speech)]
    assert np.corrcoef(heard, speech[: len(heard)])[0, 1] > 0.95

    # The mouth changes wherever there is speech; far from the mouth the frame is the input's.
    track = track_face(iter(source), fps=info.fps)
    voiced = np.asarray(voice_activity(speech, 16000, len(dubbed), info.fps), dtype=bool)
    assert track.valid.all() and voiced.sum() > 0.5 * len(dubbed)
    mouth_change, top_change = [], []
    for t in np.flatnonzero(voiced):
        lips = track.landmarks[t][list(LIPS_OUTER), :2]
        (x0, y0), (x1, y1) = np.floor(lips.min(0)).astype(int), np.ceil(lips.max(0)).astype(int)
        diff = np.abs(dubbed[t].astype(np.int16) - source[t].astype(np.int16))
        mouth_change.append(float(diff[y0:y1, x0:x1].mean()))
        top_change.append(float(diff[: y0 // 3].mean()))
    mouth, top = np.array(mouth_change), np.array(top_change)
    print(f"\nmean abs change: mouth {mouth.mean():.1f}, top of frame {top.mean():.1f} (max {top.max():.1f})")
    # Measured: mouth 41, top of the frame 2.3 (the output's re-encoding).
    assert np.mean(mouth > 4 * top + 2) > 0.9, (np.round(mouth, 1), np.round(top, 1))
    assert top.max() < 6.0, np.round(top, 1)
