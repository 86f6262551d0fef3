"""End-to-end `generate` throughput on a 720p clip against model-only throughput, with a per-stage breakdown.

A shared talking clip (default `edtalk_uncrop_Obama.mp4`, 450², 25 fps, own speech) is upscaled to 720² and
padded (mirrored edges) to 1280×720 into a temporary folder, never into the repository. Each model dubs it
with the clip's own speech (`--seconds` long): `paper` = the official 256² config with random weights
(save_pretrained into the temporary folder), `demo` = the shipped model. Model-only frames/s is measured in
the same process, on the same weights, at the same chunk size (bench_model.py's timing: audio + face encoder
+ decoder per chunk). The pipeline's per-stage wall times (StageTimer; stages overlap when pipelined) are
printed and grouped as decode, detect/track, mask, features, encoders, decoder, paste-back, encode.
`--psnr-model` also dubs the first `--psnr-seconds` in bf16 and in fp32 and compares the generated 256²
crops. Ends with one PASS/FAIL line per acceptance criterion measured; `--write` appends to RESULTS.md.

    .venv/bin/python benchmarks/bench_generate.py                        # paper + demo, 10 s, pipelined
    .venv/bin/python benchmarks/bench_generate.py --models demo --seconds 2 --psnr-seconds 1   # quick check
    .venv/bin/python benchmarks/bench_generate.py --models paper --sequential    # also the unthreaded path
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_matmul import machine_description
from bench_model import Result, bench_case

from stylelipsync.media import VideoReader, VideoWriter, load_audio, probe
from stylelipsync.models import StyleLipSync, StyleLipSyncConfig
from stylelipsync.pipelines import FrameOutput, GenerateResult, LipSyncPipeline
from stylelipsync.pipelines.lipsync import default_checkpoint

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
E2E_TARGET, PSNR_TARGET = 0.85, 35.0
GROUPS = {
    "decode": ("track: decode", "decode"),
    "detect/track": ("track",),
    "mask": ("crop+mask",),
    "features": ("audio features",),
    "encoders": ("face encoder", "audio encoder", "MaLS"),
    "decoder": ("generator",),
    "paste-back": ("composite", "paste"),
    "encode": ("encode",),
    "network idle": ("network waits for frames", "network waits for writer"),
}


@dataclass
class Run:
    """One model's end-to-end run and its model-only reference."""

    model: str
    mode: str
    result: GenerateResult
    model_fps: float = math.nan
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.result.frames_per_second / self.model_fps


def make_clip(source: Path, seconds: float, folder: Path) -> tuple[Path, Path]:
    """`seconds` of `source` upscaled to 720 px high, mirrored out to 1280×720, and its own speech as wav."""
    info = probe(source)
    fps = info.fps or 25.0
    frames = round(seconds * fps)
    video = folder / f"{source.stem}_720p.mp4"
    with VideoWriter(video, fps, 1280, 720, crf=18, preset="veryfast") as out:
        for i, frame in enumerate(VideoReader(source)):
            if i >= frames:
                break
            scale = 720 / frame.image.shape[0]
            image = cv2.resize(frame.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            side = (1280 - image.shape[1]) // 2
            image = cv2.copyMakeBorder(image, 0, 0, side, 1280 - image.shape[1] - side, cv2.BORDER_REFLECT)
            out.write(np.ascontiguousarray(image))
    wave = load_audio(source, 16000)[: int(seconds * 16000)]
    audio = folder / f"{source.stem}_speech.wav"
    sf.write(str(audio), wave, 16000, subtype="PCM_16")
    return video, audio


def model_dir(name: str, folder: Path) -> Path:
    """The model folder of `name`: the shipped model, or random paper-config weights saved to `folder`."""
    if name == "demo":
        return default_checkpoint()
    torch.manual_seed(0)
    path = folder / f"{name}_model"
    StyleLipSync(StyleLipSyncConfig.paper()).save_pretrained(path)
    return path


def grouped(stages: dict[str, float]) -> dict[str, float]:
    """Stage seconds summed into the issue's categories (detect/track = pass 1 wall minus its decoding)."""
    out = {name: sum(stages.get(k, 0.0) for k in keys) for name, keys in GROUPS.items()}
    out["detect/track"] = max(0.0, stages.get("track", 0.0) - stages.get("track: decode", 0.0))
    return out


def crops(pipe: LipSyncPipeline, video: Path, audio: Path, out: Path) -> list[np.ndarray]:
    """The 256² composite crops `generate` pastes back, one per frame with a face."""
    found: list[np.ndarray] = []

    def keep(frame: FrameOutput) -> None:
        if frame.composite is not None:
            found.append(frame.composite)

    pipe(video, audio, out, callback=keep, overwrite=True)
    return found


def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    """PSNR (dB) over all crops, and of the worst crop."""
    errors = [
        float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)) for x, y in zip(a, b, strict=True)
    ]

    def db(mse: float) -> float:
        return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)

    return db(float(np.mean(errors))), db(max(errors))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", default="edtalk_uncrop_Obama.mp4", help="talking clip in ../shared/media")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the dubbed clip")
    parser.add_argument("--models", nargs="+", choices=["paper", "demo"], default=["paper", "demo"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sequential", action="store_true", help="also run the unthreaded pipeline")
    parser.add_argument("--psnr-model", choices=["paper", "demo", "none"], default="demo")
    parser.add_argument("--psnr-seconds", type=float, default=2.0, help="clip length of the bf16/fp32 runs")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all)")
    parser.add_argument("--write", action="store_true", help=f"append the results to {RESULTS}")
    args = parser.parse_args()
    if "OMP_WAIT_POLICY" not in os.environ:
        # idle OpenMP threads must sleep, not spin, as under `stylelipsync generate`; libgomp reads this once
        # at load time, so restart the interpreter with it set
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    runs: list[Run] = []
    psnr_line = None
    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        folder = Path(tmp)
        video, audio = make_clip(MEDIA / args.clip, args.seconds, folder)
        print(f"input: {video.name} (1280x720, {args.seconds:g} s), speech {audio.name}", flush=True)
        for name in args.models:
            path = model_dir(name, folder)
            pipe = LipSyncPipeline.from_pretrained(path, device="cpu")
            modes = [True, False] if args.sequential else [True]
            for pipelined in modes:
                result = pipe(
                    video, audio, folder / f"{name}.mp4", batch_size=args.batch_size, pipelined=pipelined,
                    overwrite=True,
                )  # fmt: skip
                run = Run(name, "pipelined" if pipelined else "sequential", result)
                runs.append(run)
                print(
                    f"{name} {run.mode}: {result.frames} frames in {result.seconds:.1f} s = "
                    f"{result.frames_per_second:.3f} frames/s; stages: {result.stage_report()}",
                    flush=True,
                )
            timing = Result(name, "fp32", "fast", args.batch_size, math.nan, math.nan)
            bench_case(pipe.model.requires_grad_(False), timing, iters=2, warmup=1)
            for run in runs:
                if run.model == name:
                    run.model_fps = timing.fps
            print(f"{name} model-only: {timing.fps:.3f} frames/s (chunk {args.batch_size})", flush=True)
        if args.psnr_model != "none":
            short, speech = make_clip(MEDIA / args.clip, args.psnr_seconds, folder / "short")
            path = model_dir(args.psnr_model, folder)
            full = crops(
                LipSyncPipeline.from_pretrained(path, device="cpu"), short, speech, folder / "p32.mp4"
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # "no native bf16" is expected on some CPUs
                low_pipe = LipSyncPipeline.from_pretrained(path, device="cpu", precision="bf16")
            low = crops(low_pipe, short, speech, folder / "p16.mp4")
            overall, worst = psnr(low, full)
            psnr_line = (
                f"ACCEPTANCE bf16 vs fp32 on the generated crops ({args.psnr_model} model, "
                f"{len(full)} crops): "
                f"PSNR {overall:.1f} dB, worst crop {worst:.1f} dB (target ≥ {PSNR_TARGET:g} dB): "
                f"{'PASS' if overall >= PSNR_TARGET else 'FAIL'}"
            )

    lines = [
        "| model | pipeline | frames | e2e frames/s | model-only frames/s | e2e / model-only | "
        + " | ".join(f"{g} s" for g in GROUPS)
        + " |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(GROUPS),
    ]
    for run in runs:
        g = grouped(run.result.stage_seconds)
        lines.append(
            f"| {run.model} | {run.mode} | {run.result.frames} | {run.result.frames_per_second:.3f} | "
            f"{run.model_fps:.3f} | {run.ratio:.0%} | " + " | ".join(f"{g[k]:.1f}" for k in GROUPS) + " |"
        )
    table = "\n".join(lines)
    summary = []
    for run in runs:
        if run.model == "paper" and run.mode == "pipelined":
            summary.append(
                f"ACCEPTANCE paper e2e generate on 720p: {run.result.frames_per_second:.3f} frames/s = "
                f"{run.ratio:.0%} of model-only {run.model_fps:.3f} frames/s (target ≥ {E2E_TARGET:.0%}): "
                f"{'PASS' if run.ratio >= E2E_TARGET else 'FAIL'}"
            )
    if psnr_line:
        summary.append(psnr_line)
    print()
    print(machine_description())
    print(table)
    for run in runs:
        print(f"{run.model} {run.mode} stages: {run.result.stage_report()}")
    print()
    print("\n".join(summary))
    if args.write:
        stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        raw = "\n".join(f"- {r.model} {r.mode}: {r.result.stage_report()}" for r in runs)
        section = (
            f"\n## bench_generate.py — {stamp}\n\n"
            f"`generate` end to end on `{args.clip}` upscaled to 1280×720 ({args.seconds:g} s, own speech), "
            f"chunk {args.batch_size}, fp32, CPU; e2e frames/s = output frames / wall time of the call "
            "(tracking pass, start-up and writing included). Model-only = audio + face encoder + decoder per "
            "chunk on the same weights (bench_model.py timing). Stage columns are wall seconds per stage "
            "group; pipelined stages overlap, so they may add up to more than the wall time. "
            "`network idle` = time the network thread waited for frames or for the writer.\n\n"
            f"Machine: {machine_description()}\n\n{table}\n\nRaw stages:\n\n{raw}\n\n"
            + "\n".join(f"- {line}" for line in summary)
            + "\n"
        )
        with RESULTS.open("a") as handle:
            handle.write(section)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
