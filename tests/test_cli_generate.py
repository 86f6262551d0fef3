"""`stylelipsync generate`: a real run, batch mode, and every user error path (message, exit code, no
traceback unless --debug)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner, Result

from stylelipsync.cli import cli
from stylelipsync.errors import CheckpointError, FaceNotFoundError, MediaError, OutputError, StyleLipSyncError
from stylelipsync.media import VideoReader, VideoWriter, load_audio, probe
from stylelipsync.models import StyleLipSync, StyleLipSyncConfig
from stylelipsync.pipelines import GenerateOptions, GenerateResult, LipSyncPipeline

CLIP = "dreamtalk_M030_front_neutral_level1_001.mp4"
SPEECH = "sadtalker_answer.wav"


def invoke(*args: str | Path) -> Result:
    """Run the CLI in-process; stdout and stderr are kept apart (`result.stdout`, `result.stderr`)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_user_error(result: Result, code: int, *fragments: str) -> None:
    """Exit `code`, a one-line `error: ...` message containing every fragment, and no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "error: " in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert "Traceback" not in result.output


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the tiny model (see tests/test_pipeline_generate.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="session")
def assets(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small inputs: a photo, 0.64 s of speech (wav, and at 44.1 kHz inside a video), a faceless video..."""
    root = tmp_path_factory.mktemp("cli_assets")
    first = next(iter(VideoReader(media_dir / CLIP))).image
    cv2.imwrite(str(root / "photo.jpg"), first[:, :, ::-1])
    speech = load_audio(media_dir / SPEECH, 16000)[:10240]
    sf.write(str(root / "speech.wav"), speech, 16000, subtype="PCM_16")
    sf.write(str(root / "empty.wav"), np.zeros(0, np.float32), 16000, subtype="PCM_16")
    speech44 = load_audio(media_dir / SPEECH, 44100)[:28224]
    with VideoWriter(root / "speech_in_video.mp4", 25, 64, 64, audio=speech44, sample_rate=44100) as out:
        for _ in range(16):
            out.write(np.full((64, 64, 3), 90, np.uint8))
    with VideoWriter(root / "grey.mp4", 25, 128, 128) as out:
        for _ in range(20):
            out.write(np.full((128, 128, 3), 128, np.uint8))
    (root / "notes.mp4").write_text("this is not a video\n")
    return {
        "clip": media_dir / CLIP,
        "photo": root / "photo.jpg",
        "speech": root / "speech.wav",
        "speech44_video": root / "speech_in_video.mp4",
        "empty": root / "empty.wav",
        "grey": root / "grey.mp4",
        "text": root / "notes.mp4",
        "audio_only": media_dir / SPEECH,
    }


# ----------------------------------------------------------------------------------------------- runs


def test_generate_writes_the_video_and_prints_a_summary(
    model_dir: Path, assets: dict[str, Path], tmp_path: Path
) -> None:
    """The audio comes from a video's track (44.1 kHz); the output keeps that rate, in sync."""
    out = tmp_path / "dubbed.mp4"
    result = invoke(
        "generate", "-v", assets["clip"], "-a", assets["speech44_video"], "-o", out, "-c", model_dir,
        "--batch-size", "4",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (256x256, 16 frames at 25 fps, 0.64 s)" in result.stdout
    assert "faces found in 16 of 16 frames" in result.stdout
    assert "frames/s)" in result.stdout
    assert "dubbing" in result.stderr and "frame/s" in result.stderr  # the progress bar
    info = probe(out)
    assert info.video_codec == "h264" and info.sample_rate == 44100 and info.n_frames == 16
    dubbed, original = load_audio(out, 16000), load_audio(assets["speech44_video"], 16000)
    n = min(len(dubbed), len(original))
    lags = range(-80, 81)
    best = max(lags, key=lambda k: float(np.dot(original[100 : n - 100], dubbed[100 + k : n - 100 + k])))
    assert best == 0


def test_debug_adds_stage_times(model_dir: Path, assets: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "photo.mp4"
    result = invoke(
        "--debug", "generate", "-v", assets["photo"], "-a", assets["speech"], "-o", out, "-c", model_dir
    )
    assert result.exit_code == 0, result.output
    assert "stages: " in result.stdout and "generator" in result.stdout


def test_jobs_csv_continues_past_a_failed_job(
    model_dir: Path, assets: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "video,audio,output\n"
        f"{assets['photo']},{assets['speech']},out/one.mp4\n"
        f"missing.mp4,{assets['speech']},out/two.mp4\n"
        f"{assets['photo']},{assets['speech']},{tmp_path / 'out' / 'three.mp4'}\n"
    )
    result = invoke("generate", "--jobs", jobs, "-c", model_dir)
    assert result.exit_code == 1
    assert f"[1/3] {tmp_path / 'out' / 'one.mp4'}: done (16 frames" in result.stdout
    assert (
        f"[2/3] {tmp_path / 'out' / 'two.mp4'}: failed: {tmp_path / 'missing.mp4'}: file not found"
        in result.stderr
    )
    assert f"[3/3] {tmp_path / 'out' / 'three.mp4'}: done" in result.stdout
    assert "2 of 3 jobs done, 1 failed" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.mp4", "three.mp4"]
    assert "Traceback" not in result.output


def test_malformed_jobs_file(model_dir: Path, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("clip,speech\na.mp4,b.wav\n")
    assert_user_error(
        invoke("generate", "--jobs", jobs, "-c", model_dir), MediaError.exit_code, "video,audio,output"
    )


# ----------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "video,audio,code,fragments",
    [
        ("missing", "speech", MediaError.exit_code, ["missing.mp4: file not found"]),
        ("text", "speech", MediaError.exit_code, ["notes.mp4: not a readable media file"]),
        ("audio_only", "speech", MediaError.exit_code, ["sadtalker_answer.wav: has no video stream"]),
        ("photo", "empty", MediaError.exit_code, ["empty.wav", "no samples"]),
        ("photo", "grey", MediaError.exit_code, ["grey.mp4: has no audio stream"]),
        ("grey", "speech", FaceNotFoundError.exit_code, ["grey.mp4: no face found in any frame", "--bbox"]),
    ],
)
def test_input_errors(
    model_dir: Path,
    assets: dict[str, Path],
    tmp_path: Path,
    video: str,
    audio: str,
    code: int,
    fragments: list[str],
) -> None:
    paths = {**assets, "missing": tmp_path / "missing.mp4"}
    out = tmp_path / "out.mp4"
    result = invoke("generate", "-v", paths[video], "-a", paths[audio], "-o", out, "-c", model_dir)
    assert_user_error(result, code, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_no_face_inside_the_bbox(model_dir: Path, assets: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = invoke(
        "generate", "-v", assets["photo"], "-a", assets["speech"], "-o", out, "-c", model_dir,
        "--bbox", "0,0,20,20",
    )  # fmt: skip
    assert_user_error(
        result, FaceNotFoundError.exit_code, "photo.jpg: no face found", "inside the --bbox box"
    )


def test_checkpoint_errors(model_dir: Path, assets: dict[str, Path], tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    StyleLipSync(StyleLipSyncConfig.tiny(32)).save_pretrained(mixed)
    (mixed / "config.json").write_bytes((model_dir / "config.json").read_bytes())
    base = ["generate", "-v", assets["photo"], "-a", assets["speech"], "-o", tmp_path / "out.mp4"]
    code = CheckpointError.exit_code
    assert_user_error(invoke(*base, "-c", mixed), code, "config in config.json and the weights don't match")
    assert_user_error(invoke(*base, "-c", tmp_path / "nowhere"), code, "nowhere does not exist")
    assert_user_error(
        invoke(*base, "-c", model_dir, "--w-avg", tmp_path / "w.pth"), code, "--w-avg goes with"
    )
    bad_pth = tmp_path / "bad.pth"
    bad_pth.write_bytes(b"not a checkpoint")
    assert_user_error(invoke(*base, "-c", bad_pth), code, "bad.pth: cannot read checkpoint")


def test_output_errors(model_dir: Path, assets: dict[str, Path], tmp_path: Path) -> None:
    base = ["generate", "-v", assets["photo"], "-a", assets["speech"], "-c", model_dir, "-o"]
    code = OutputError.exit_code
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_user_error(invoke(*base, blocker / "out.mp4"), code, "part of the output path is a file")
    if Path("/sys").is_dir() and not os.access("/sys", os.W_OK):
        assert_user_error(
            invoke(*base, "/sys/out.mp4"), code, "/sys/out.mp4: the output folder is not writable"
        )
    elif Path("/sys").is_dir():
        assert_user_error(invoke(*base, "/sys/out.mp4"), code, "not writable")
    assert_user_error(invoke(*base, assets["photo"], "--overwrite"), code, "photo.jpg: is an input file")
    assert_user_error(invoke(*base, tmp_path / "out.gif"), code, "unsupported output type")
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"old")
    assert_user_error(invoke(*base, existing), code, "exists.mp4: already exists; pass --overwrite")
    assert existing.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.mp4", "file"]


def test_disk_full_leaves_no_output(model_dir: Path, assets: dict[str, Path], tmp_path: Path) -> None:
    """A file-size limit fails writes like a full disk (EFBIG); the CLI runs in a child process."""
    out = tmp_path / "out" / "dubbed.mp4"
    out.parent.mkdir()
    args = [
        "generate",
        "-v",
        str(assets["photo"]),
        "-a",
        str(assets["speech"]),
        "-o",
        str(out),
        "-c",
        str(model_dir),
    ]
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4_000, resource.RLIM_INFINITY))
        sys.argv = ["stylelipsync", *{args!r}]
        from stylelipsync.cli import main
        main()
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == OutputError.exit_code, result.stdout + result.stderr
    assert f"error: {out}: disk full" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(out.parent.iterdir()) == []


def test_cuda_without_a_gpu(model_dir: Path, assets: dict[str, Path], tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    result = invoke(
        "generate", "-v", assets["photo"], "-a", assets["speech"], "-o", tmp_path / "o.mp4", "-c", model_dir,
        "--device", "cuda",
    )  # fmt: skip
    assert_user_error(result, StyleLipSyncError.exit_code, "no CUDA GPU is available; use --device cpu")


def test_reference_frame_past_the_end(model_dir: Path, assets: dict[str, Path], tmp_path: Path) -> None:
    result = invoke(
        "generate", "-v", assets["photo"], "-a", assets["speech"], "-o", tmp_path / "o.mp4", "-c", model_dir,
        "--reference-frame", "3",
    )  # fmt: skip
    assert_user_error(
        result, StyleLipSyncError.exit_code, "--reference-frame 3 is past the end", "choose 0 to 0"
    )


@pytest.mark.parametrize(
    "args,fragment",
    [
        ([], "give --video, --audio and --output"),
        (["--jobs", "j.csv", "-v", "a.mp4"], "do not combine it with --video"),
        (["-v", "a.mp4", "-a", "b.wav", "-o", "c.mp4", "--face-index", "1", "--bbox", "0,0,9,9"], "not both"),
        (["-v", "a.mp4", "-a", "b.wav", "-o", "c.mp4", "--bbox", "5,5,1,1"], "X0,Y0,X1,Y1"),
        (
            ["-v", "a.mp4", "-a", "b.wav", "-o", "c.mp4", "--loop", "bounce"],
            "loop must be pingpong, forward or hold; got 'bounce'",
        ),
        (
            ["-v", "a.mp4", "-a", "b.wav", "-o", "c.mp4", "--engine", "wav2lip"],
            "engine must be bank or stylelipsync; got 'wav2lip'",
        ),
        (
            ["-v", "a.mp4", "-a", "b.wav", "-o", "c.mp4", "--engine", "bank", "-c", "model_dir"],
            "--engine bank renders from the video itself and loads no model: drop --checkpoint",
        ),
        (
            ["-v", "a.mp4", "-a", "b.wav", "-o", "c.mp4", "-c", "model_dir", "--bank-video", "d.mp4"],
            "--bank-video goes with the bank engine",
        ),
        (
            ["--jobs", "j.csv", "--engine", "stylelipsync", "--bank-video", "d.mp4"],
            "--bank-video goes with the bank engine",
        ),
        (
            ["-v", "a.mp4", "-a", "b.wav", "-o", "c.mp4", "--w-avg", "w.pth"],
            "--w-avg goes with an official .pth --checkpoint",
        ),
    ],
)
def test_usage_errors(args: list[str], fragment: str) -> None:
    result = invoke("generate", *args)
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(model_dir: Path, assets: dict[str, Path], tmp_path: Path) -> None:
    result = invoke(
        "--debug", "generate", "-v", tmp_path / "missing.mp4", "-a", assets["speech"],
        "-o", tmp_path / "o.mp4", "-c", model_dir,
    )  # fmt: skip
    assert result.exit_code == MediaError.exit_code
    assert "Traceback" in result.stderr and "error: " in result.stderr


# ----------------------------------------------------------------------------------------------- speed


def test_precision_bf16_and_threads(model_dir: Path, assets: dict[str, Path], tmp_path: Path) -> None:
    from contextlib import nullcontext

    from stylelipsync.models import cpu_has_native_bf16

    out = tmp_path / "bf16.mp4"
    slow = not cpu_has_native_bf16()  # then the user is told that bf16 is slower than fp32 here
    with pytest.warns(RuntimeWarning, match="no native bf16") if slow else nullcontext():
        result = invoke(
            "generate", "-v", assets["photo"], "-a", assets["speech"], "-o", out, "-c", model_dir,
            "--precision", "bf16", "--threads", "1",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "faces found in 16 of 16 frames" in result.stdout
    assert probe(out).n_frames == 16


def test_precision_fp16_needs_cuda(model_dir: Path, assets: dict[str, Path], tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    result = invoke(
        "generate", "-v", assets["photo"], "-a", assets["speech"], "-o", tmp_path / "o.mp4", "-c", model_dir,
        "--precision", "fp16",
    )  # fmt: skip
    assert_user_error(result, StyleLipSyncError.exit_code, "fp16 needs a CUDA GPU", "use --precision bf16")
    assert not (tmp_path / "o.mp4").exists()


def test_compile_falls_back_when_compiling_fails(
    model_dir: Path, assets: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine without a working compiler still dubs with --compile: one warning, the same video."""

    def broken_compile(fn: Any, **_: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("InductorError: C++ compile error")

        return run

    plain = tmp_path / "plain.mp4"
    compiled = tmp_path / "compiled.mp4"
    args = ["generate", "-v", assets["photo"], "-a", assets["speech"], "-c", model_dir]
    assert invoke(*args, "-o", plain).exit_code == 0
    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile of the .* failed.*running it without compiling"):
        result = invoke(*args, "-o", compiled, "--compile")
    assert result.exit_code == 0, result.output
    frames = [[f.image.tobytes() for f in VideoReader(path)] for path in (plain, compiled)]
    assert frames[0] == frames[1]


# ----------------------------------------------------------------------------------------------- engines


class FakePipeline:
    """Stands in for a loaded `LipSyncPipeline`: records how it was loaded and each call's options, renders
    nothing, and answers a `GenerateResult` with one warning."""

    def __init__(self, path: Path | None, **loaded: Any) -> None:
        self.path, self.loaded = path, loaded
        self.calls: list[tuple[Path, GenerateOptions]] = []

    def __call__(
        self, video: Path, audio: Path, output: Path, options: GenerateOptions, progress: Any = False
    ) -> GenerateResult:
        self.calls.append((Path(video), options))
        engine = options.engine or ("stylelipsync" if self.path is not None else "bank")
        return GenerateResult(
            output_path=Path(output),
            frames=16,
            frames_with_face=16,
            fps=25.0,
            seconds=0.5,
            width=64,
            height=64,
            source_frames=1,
            engine=engine,
            warnings=["the bank has few open-mouth shapes"],
        )


@pytest.fixture
def fake_pipelines(monkeypatch: pytest.MonkeyPatch) -> list[FakePipeline]:
    """`LipSyncPipeline.from_pretrained` replaced by `FakePipeline`; the pipelines it made, in order."""
    made: list[FakePipeline] = []

    def from_pretrained(path: Path | None = None, **loaded: Any) -> FakePipeline:
        made.append(FakePipeline(path, **loaded))
        return made[-1]

    monkeypatch.setattr(LipSyncPipeline, "from_pretrained", staticmethod(from_pretrained))
    return made


@pytest.mark.parametrize(
    "flags,engine,with_checkpoint",
    [
        ([], "bank", False),
        (["--engine", "bank"], "bank", False),
        (["-c", "MODEL"], "stylelipsync", True),
        (["--engine", "stylelipsync"], "stylelipsync", False),
        (["--engine", "stylelipsync", "-c", "MODEL"], "stylelipsync", True),
    ],
)
def test_the_engine_reaches_the_pipeline_and_its_options(
    fake_pipelines: list[FakePipeline],
    model_dir: Path,
    assets: dict[str, Path],
    tmp_path: Path,
    flags: list[str],
    engine: str,
    with_checkpoint: bool,
) -> None:
    """bank without --checkpoint, stylelipsync with one (or when asked for: the shipped demo model)."""
    flags = [str(model_dir) if f == "MODEL" else f for f in flags]
    out = tmp_path / "o.mp4"
    result = invoke("generate", "-v", assets["photo"], "-a", assets["speech"], "-o", out, *flags)
    assert result.exit_code == 0, result.output
    [pipe] = fake_pipelines
    assert pipe.loaded["engine"] == engine and pipe.path == (model_dir if with_checkpoint else None)
    [(video, options)] = pipe.calls
    assert video == assets["photo"] and options.engine == engine and options.bank_video == ()
    assert f", {engine} engine" in result.stdout
    assert "warning: the bank has few open-mouth shapes" in result.stdout


def test_bank_video_is_repeatable_and_checked_before_loading(
    fake_pipelines: list[FakePipeline], assets: dict[str, Path], tmp_path: Path
) -> None:
    base = ["generate", "-v", assets["photo"], "-a", assets["speech"], "-o", tmp_path / "o.mp4"]
    result = invoke(*base, "--bank-video", assets["clip"], "--bank-video", assets["speech44_video"])
    assert result.exit_code == 0, result.output
    [(_, options)] = fake_pipelines[0].calls
    assert options.engine == "bank"
    assert options.bank_video == (str(assets["clip"]), str(assets["speech44_video"]))
    missing = invoke(*base, "--bank-video", assets["clip"], "--bank-video", tmp_path / "gone.mp4")
    assert_user_error(missing, MediaError.exit_code, "gone.mp4: file not found")
    assert len(fake_pipelines) == 1  # the second run stopped before loading anything


def test_jobs_csv_rows_choose_their_engine(
    fake_pipelines: list[FakePipeline], model_dir: Path, assets: dict[str, Path], tmp_path: Path
) -> None:
    """A row's engine and bank_video (`;`-separated, relative to the CSV) override the command's; a bad
    engine fails its row alone, naming the column and the choices."""
    (tmp_path / "person.mp4").write_bytes(b"x")
    jobs = tmp_path / "jobs.csv"
    photo, speech = assets["photo"], assets["speech"]
    jobs.write_text(
        "video,audio,output,engine,bank_video\n"
        f"{photo},{speech},one.mp4,,\n"
        f"{photo},{speech},two.mp4,bank,person.mp4; {assets['clip']}\n"
        f"{photo},{speech},three.mp4,Wav2Lip,\n"
    )
    result = invoke("generate", "--jobs", jobs, "-c", model_dir)
    assert result.exit_code == 1, result.output
    [pipe] = fake_pipelines
    assert pipe.loaded["engine"] == "stylelipsync" and pipe.path == model_dir
    assert [(o.engine, o.bank_video) for _, o in pipe.calls] == [
        ("stylelipsync", ()),
        ("bank", (str(tmp_path / "person.mp4"), str(assets["clip"]))),
    ]
    assert f"[1/3] {tmp_path / 'one.mp4'}: done (16 frames, faces in 16, 0.5 s, stylelipsync engine)" in (
        result.stdout
    )
    assert f"[2/3] {tmp_path / 'two.mp4'}: done (16 frames, faces in 16, 0.5 s, bank engine)" in result.stdout
    assert f"[2/3] {tmp_path / 'two.mp4'}: warning: the bank has few open-mouth shapes" in result.stderr
    assert "line 4: column engine: engine must be bank or stylelipsync; got 'Wav2Lip'" in result.stderr
    assert "2 of 3 jobs done, 1 failed" in result.stdout
