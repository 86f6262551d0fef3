"""Model-only inference speed of the StyleLipSync generator (random weights, no I/O), against the matmul peak.

Per chunk of frames: audio encoder + face encoder + decoder, the work `generate` repeats for every chunk (the
reference encoder runs once per video and MaLS is negligible; both reported apart). For each config, precision
(fp32, bf16 autocast) and chunk size: frames/s, achieved GFLOP/s (FLOPs counted by
torch.utils.flop_counter on one frame) and its ratio to this machine's matmul GFLOP/s of the same dtype,
measured in the same process (bench_matmul.py). Configs: `paper` (official 256², ~67 GFLOP/frame) and `demo`
(the shipped model's config). Ends with one PASS/FAIL line per acceptance criterion of issue #9 that this
script measures; `--write` appends a dated section to benchmarks/RESULTS.md.

Cases whose estimated time exceeds `--budget` seconds are run once or skipped (bf16 on a CPU without bf16
kernels runs ~100× slower than fp32; the estimate uses the measured bf16 matmul speed).

    .venv/bin/python benchmarks/bench_model.py              # paper + demo, chunks 1/8/16, fp32 + bf16
    .venv/bin/python benchmarks/bench_model.py --config demo --batches 1 8 --iters 2   # quick check
    .venv/bin/python benchmarks/bench_model.py --path both --precisions fp32 --batches 8   # vs unoptimised
    .venv/bin/python benchmarks/bench_model.py --write
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_matmul import MatmulResult, machine_description
from bench_matmul import measure as measure_matmul

from stylelipsync.models import StyleLipSync, StyleLipSyncConfig
from stylelipsync.pipelines.lipsync import default_checkpoint

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
CONFIGS: dict[str, Callable[[], StyleLipSyncConfig]] = {
    "paper": StyleLipSyncConfig.paper,
    "demo": lambda: StyleLipSyncConfig.from_json(default_checkpoint() / "config.json"),
    "tiny": StyleLipSyncConfig.tiny,
}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
FP32_TARGET, BF16_TARGET, MAX_DIFF = 0.60, 0.40, 1e-3


@dataclass
class Result:
    """One (config, precision, path, chunk) case; times are median seconds per chunk."""

    config: str
    precision: str
    path: str
    batch: int
    gflop_per_frame: float
    peak: float
    audio: float = math.nan
    face: float = math.nan
    decode: float = math.nan
    cpu: float = math.nan
    reference_once: float = math.nan
    iters: int = 0
    psnr_vs_fp32: float = math.nan
    skipped: str = ""

    @property
    def per_chunk(self) -> float:
        return self.audio + self.face + self.decode

    @property
    def fps(self) -> float:
        return self.batch / self.per_chunk

    @property
    def gflops(self) -> float:
        return self.gflop_per_frame * self.fps

    @property
    def ratio(self) -> float:
        return self.gflops / self.peak


def build(name: str) -> StyleLipSync:
    """Random-weight model of a config, eval mode, frozen (seeded: every run sees the same weights)."""
    torch.manual_seed(0)
    return StyleLipSync(CONFIGS[name]()).eval().requires_grad_(False)


def inputs(model: StyleLipSync, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked frames [B, 3, R, R], mel windows [B, 20, 80] and a reference frame [1, 3, R, R]."""
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(batch, 3, cfg.resolution, cfg.resolution, generator=g) * 2 - 1
    mel = torch.randn(batch, cfg.mel_steps, cfg.mel_bins, generator=g) - 3
    ref = torch.rand(1, 3, cfg.resolution, cfg.resolution, generator=g) * 2 - 1
    return frames, mel, ref


@torch.no_grad()
def gflop_per_frame(model: StyleLipSync) -> float:
    """FLOPs of audio encoder + face encoder + decoder for one frame (the per-chunk work), in GFLOP."""
    frames, mel, ref = inputs(model, 1)
    styles = model.mix_styles(model.audio_styles(mel.expand(2, -1, -1)), model.reference_styles(ref)[0])[:1]
    with FlopCounterMode(display=False) as counter:
        model.audio_styles(mel)
        model.decode(styles, model.face_features(frames))
    return counter.get_total_flops() / 1e9


def median_time(fn: Callable[[], object], iters: int, warmup: int) -> tuple[float, float]:
    """Median wall-clock and process-CPU seconds of ``fn``."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(iters):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two decoder outputs mapped from [-1, 1] to 0..255 (clamped, as the pipeline does)."""
    x = (a.float().clamp(-1, 1) + 1) * 127.5
    y = (b.float().clamp(-1, 1) + 1) * 127.5
    mse = float((x - y).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


@torch.no_grad()
def bench_case(model: StyleLipSync, result: Result, iters: int, warmup: int) -> torch.Tensor:
    """Time one case into ``result``; returns its decoder output (for the bf16-vs-fp32 PSNR)."""
    frames, mel, ref = inputs(model, result.batch)
    dtype = PRECISIONS[result.precision]
    model.set_kernels("reference" if result.path == "reference" else "fast")

    def autocast() -> AbstractContextManager[object]:
        return torch.autocast("cpu", dtype=dtype) if dtype is not None else nullcontext()

    w_ref = model.reference_styles(ref)[0]
    styles = model.mix_styles(model.audio_styles(mel if result.batch > 1 else mel.expand(2, -1, -1)), w_ref)
    styles = styles[: result.batch]
    with autocast():
        features = model.face_features(frames)
        out = model.decode(styles, features).float()

    def face() -> object:
        with autocast():
            return model.face_features(frames)

    def decode() -> object:
        with autocast():
            return model.decode(styles, features)

    result.audio, audio_cpu = median_time(lambda: model.audio_styles(mel), iters, warmup)
    result.face, face_cpu = median_time(face, iters, warmup)
    result.decode, decode_cpu = median_time(decode, iters, warmup)
    result.reference_once, _ = median_time(lambda: model.reference_styles(ref), 1, 0)
    result.cpu = audio_cpu + face_cpu + decode_cpu
    result.iters = iters
    return out


@torch.no_grad()
def check_equal(model: StyleLipSync, batch: int = 2) -> float:
    """Max abs difference of ``infer`` between the optimised kernels and the reference ones."""
    frames, mel, ref = inputs(model, batch)
    fast = model.set_kernels("fast").infer(frames, mel, ref[0], chunk_size=batch)
    slow = model.set_kernels("reference").infer(frames, mel, ref[0], chunk_size=batch)
    return float((fast - slow).abs().max())


def format_table(results: list[Result]) -> str:
    lines = [
        "| config | precision | kernels | chunk | frames/s | GFLOP/frame | achieved GFLOP/s "
        "| % of matmul peak | s/chunk (audio / face / decoder) | CPU s/chunk | E_ref once s "
        "| PSNR vs fp32 dB | iters |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        head = f"| {r.config} | {r.precision} | {r.path} | {r.batch} "
        if r.skipped:
            lines.append(head + f"| skipped: {r.skipped} | {r.gflop_per_frame:.1f} | | | | | | | |")
            continue
        lines.append(
            head + f"| {r.fps:.3f} | {r.gflop_per_frame:.1f} | {r.gflops:.1f} | {100 * r.ratio:.0f}% "
            f"| {r.per_chunk:.2f} ({r.audio:.2f} / {r.face:.2f} / {r.decode:.2f}) | {r.cpu:.2f} "
            f"| {r.reference_once:.2f} | {r.psnr_vs_fp32:.1f} | {r.iters} |"
        )
    return "\n".join(lines)


def verdict(passed: bool | None) -> str:
    return "NOT MEASURED" if passed is None else ("PASS" if passed else "FAIL")


def acceptance(results: list[Result], peaks: dict[str, MatmulResult], diff: float | None) -> list[str]:
    """One line per issue-#9 criterion this script measures (paper config, fast kernels, chunk 8)."""
    lines = []
    for precision, target in (("fp32", FP32_TARGET), ("bf16", BF16_TARGET)):
        found = [
            r
            for r in results
            if r.config == "paper" and r.precision == precision and r.path == "fast" and not r.skipped
        ]
        chosen = next((r for r in found if r.batch == 8), found[-1] if found else None)
        if chosen is None or precision not in peaks:
            lines.append(
                f"ACCEPTANCE paper {precision} model-only ≥ {target:.0%} of {precision} matmul peak: "
                "NOT MEASURED"
            )
            continue
        note = "" if chosen.batch == 8 else f" (chunk {chosen.batch}: chunk 8 was not measured)"
        lines.append(
            f"ACCEPTANCE paper {precision} model-only, chunk {chosen.batch}: {chosen.gflops:.1f} GFLOP/s = "
            f"{chosen.ratio:.0%} of {precision} matmul peak {peaks[precision].gflops:.1f} GFLOP/s "
            f"({chosen.fps:.3f} frames/s; target ≥ {target:.0%}): {verdict(chosen.ratio >= target)}{note}"
        )
    lines.append(
        f"ACCEPTANCE paper optimised vs unoptimised kernels, max abs diff of infer(): "
        f"{'n/a' if diff is None else f'{diff:.2e}'} (target ≤ {MAX_DIFF:g}): "
        f"{verdict(None if diff is None else diff <= MAX_DIFF)}"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", nargs="+", choices=list(CONFIGS), default=["paper", "demo"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 16], help="frames per chunk")
    parser.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), default=["fp32", "bf16"])
    parser.add_argument("--path", choices=["fast", "reference", "both"], default="fast", help="kernels")
    parser.add_argument("--iters", type=int, default=3, help="timed repetitions per stage (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--budget", type=float, default=900, help="seconds one case may take (estimated)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: all cores)"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the optimised-vs-reference comparison")
    parser.add_argument("--write", action="store_true", help=f"append the results to {RESULTS}")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    peaks = {p: measure_matmul(p) for p in args.precisions}
    for p, peak in peaks.items():
        print(f"matmul {p}: {peak.gflops:.1f} GFLOP/s (size {peak.size})", flush=True)
    paths = ["fast", "reference"] if args.path == "both" else [args.path]
    results: list[Result] = []
    diff: float | None = None
    for name in args.config:
        model = build(name)
        gflop = gflop_per_frame(model)
        print(f"{name}: {gflop:.1f} GFLOP/frame", flush=True)
        if name == "paper" and not args.no_check:
            diff = check_equal(model)
            print(f"paper: optimised vs reference max abs diff {diff:.2e}", flush=True)
        for path in paths:
            rate: dict[str, float] = {}
            fp32_out: dict[int, torch.Tensor] = {}
            for precision in args.precisions:
                for batch in args.batches:
                    r = Result(name, precision, path, batch, gflop, peaks[precision].gflops)
                    # one chunk's seconds, from this config's last measured rate or half the matmul peak;
                    # a case runs the chunk once untimed, then (warmup + iters) times
                    chunk = gflop * batch / rate.get(precision, 0.5 * peaks[precision].gflops)
                    iters, warmup = args.iters, args.warmup
                    if chunk * (1 + warmup + iters) > args.budget:
                        iters, warmup = 1, 0
                    if chunk * 2 > args.budget:
                        r.skipped = f"estimated {chunk * 2:.0f} s > --budget {args.budget:g} s"
                        print(f"{name} {precision} {path} chunk {batch}: {r.skipped}", flush=True)
                        results.append(r)
                        continue
                    out = bench_case(model, r, iters, warmup)
                    rate[precision] = r.gflops
                    if precision == "fp32":
                        fp32_out[batch] = out
                    elif batch in fp32_out:
                        r.psnr_vs_fp32 = psnr(out, fp32_out[batch])
                    print(
                        f"{name} {precision} {path} chunk {batch}: {r.fps:.3f} frames/s, "
                        f"{r.gflops:.1f} GFLOP/s = {r.ratio:.0%} of matmul peak ({r.per_chunk:.2f} s/chunk)",
                        flush=True,
                    )
                    results.append(r)

    table = format_table(results)
    peak_line = ", ".join(f"{p} {m.gflops:.1f} GFLOP/s (size {m.size})" for p, m in peaks.items())
    summary = acceptance(results, peaks, diff)
    print()
    print(machine_description())
    print(f"matmul peak: {peak_line}")
    print(table)
    print()
    print("\n".join(summary))
    if args.write:
        stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        section = (
            f"\n## bench_model.py — {stamp}\n\n"
            "Model-only forward (random weights, eval, no grad), median of timed repetitions. frames/s = "
            "chunk / (audio + face + decoder) wall time; achieved GFLOP/s = GFLOP/frame "
            "(torch.utils.flop_counter) × frames/s, compared with the dense matmul peak of the same dtype "
            "measured in the same process. `fast` = the inference kernels (channels-last, in-place "
            "epilogues, per-layer modulation, depthwise FIR), `reference` = the unoptimised operators. "
            "PSNR vs fp32: decoder outputs of the same inputs.\n\n"
            f"Machine: {machine_description()}\n\nMatmul peak: {peak_line}\n\n{table}\n\n"
            + "\n".join(f"- {line}" for line in summary)
            + "\n"
        )
        with RESULTS.open("a") as handle:
            handle.write(section)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
