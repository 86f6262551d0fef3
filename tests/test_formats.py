"""`stylelipsync.formats`: the rate and suffix sets are defined there only, importing it loads no media stack,
and every output suffix writes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stylelipsync.formats import OUTPUT_SUFFIXES, SAMPLE_RATE, SPEECH_SOURCE_SUFFIXES, VIDEO_SUFFIXES
from stylelipsync.media import VideoReader, VideoWriter, probe

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "stylelipsync"
FORMATS = PACKAGE / "formats.py"
SHARED_NAMES = ("SAMPLE_RATE", "_SUFFIXES", "_EXTENSIONS", "_CONTAINERS")


def copies_in(path: Path) -> list[str]:
    """Definitions by value of the shared constants in `path`: an assignment of a literal to a shared name, or
    a bare 16000 anywhere except inside a set of several rates (such as the rates AAC can carry)."""
    tree = ast.parse(path.read_text(), str(path))
    in_sets = {id(c) for node in ast.walk(tree) if isinstance(node, ast.Set) for c in node.elts}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value == 16000 and id(node) not in in_sets:
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: 16000")
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        else:
            continue
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        literal = value is not None and any(isinstance(n, ast.Constant) for n in ast.walk(value))
        for name in names:
            if literal and any(name == s or name.endswith(s) for s in SHARED_NAMES):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}")
    return found


def test_rate_and_suffixes_are_defined_only_in_formats() -> None:
    copies = [hit for path in sorted(PACKAGE.rglob("*.py")) if path != FORMATS for hit in copies_in(path)]
    assert not copies, "define these in stylelipsync/formats.py and import them:\n" + "\n".join(copies)
    assert copies_in(FORMATS)  # the scan does see definitions


def test_the_scan_finds_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "stylelipsync"
    fake.mkdir()
    (fake / "a.py").write_text("SAMPLE_RATE = 16_000\nOK = {8000, 16000, 48000}\n")
    (fake / "b.py").write_text('VIDEO_EXTENSIONS = (".mp4",)\nALIAS_SUFFIXES = VIDEO_EXTENSIONS\n')
    (fake / "c.py").write_text("def load(path, sample_rate: int = 16000): ...\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    hits = sorted(hit for path in fake.glob("*.py") for hit in copies_in(path))
    assert hits == ["a.py:1: 16000", "a.py:1: SAMPLE_RATE", "b.py:1: VIDEO_EXTENSIONS", "c.py:1: 16000"]


def test_the_audio_features_load_no_media_stack() -> None:
    """The mel front-end takes the rate from `formats` without loading PyAV or OpenCV (their import raised
    the peak memory of a 60 s `generate` by 28 MiB when `audio.mel` took it from `stylelipsync.media`)."""
    code = "import sys, stylelipsync.audio, stylelipsync.formats\n"
    code += "print(sorted({'av', 'cv2'} & set(sys.modules)))"

    env = {"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_speech_sources_are_audio_files_and_videos() -> None:
    assert set(VIDEO_SUFFIXES) <= set(SPEECH_SOURCE_SUFFIXES) and ".wav" in SPEECH_SOURCE_SUFFIXES
    assert set(VIDEO_SUFFIXES) >= OUTPUT_SUFFIXES  # what we write, we can read back


@pytest.mark.parametrize("suffix", sorted(OUTPUT_SUFFIXES))
def test_every_output_suffix_is_written_with_audio(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    audio = np.sin(np.arange(SAMPLE_RATE // 5) * 0.05).astype(np.float32) * 0.3
    with VideoWriter(path, 25, 64, 48, audio=audio) as writer:
        for k in range(5):
            writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    info = probe(path)  # (Matroska stores no frame count: count the frames by decoding them)
    assert (info.video_codec, info.has_audio, info.sample_rate) == ("h264", True, SAMPLE_RATE)
    assert len(list(VideoReader(path))) == 5
