"""The package installs and exposes its console script; `stylelipsync --help` names the extras; the default
engine's start-up imports nothing it does not use."""

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import stylelipsync
from stylelipsync.cli import cli

SRC = Path(stylelipsync.__file__).resolve().parents[1]


def test_version_flag_prints_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert stylelipsync.__version__ in result.output


def test_help_names_the_extras_of_each_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    train = next(line for line in result.output.splitlines() if '".[train]"' in line)
    assert "adapt" in train and "train-syncnet" in train
    assert any('".[ray]"' in line and "batch --ray" in line for line in result.output.splitlines())


def test_bank_engine_start_up_imports_no_torch_librosa_or_matplotlib(media_dir: Path) -> None:
    """What `generate` does before its first frame with the default engine (CLI, pipeline, bank engine, the
    audio → mouth-shape prediction, MediaPipe's detector) must not import PyTorch (seconds on 2 cores),
    librosa's filters (numba) or matplotlib (MediaPipe's unused drawing helpers)."""
    code = f"""
import sys
import stylelipsync.cli
from stylelipsync.pipelines import LipSyncPipeline
from stylelipsync.pipelines.engines.bank import MouthBankEngine
from stylelipsync.face.detect import FaceDetector
from stylelipsync.media import load_audio
pipe = LipSyncPipeline.from_pretrained()
engine = pipe.engine()
assert isinstance(engine, MouthBankEngine), engine
wave = load_audio({str(media_dir / "sls_RoyBlunt_0_10s.wav")!r}, 16000)[:32000]
assert engine.shape_model.predict(wave, 16000, 50, 25.0).shape[0] == 50
FaceDetector().close()
heavy = sorted(m for m in ("torch", "librosa.filters", "matplotlib", "scipy.signal") if m in sys.modules)
print("HEAVY", heavy)
"""
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout, proc.stdout
