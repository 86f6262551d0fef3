"""Model-only inference speed of the StyleLipSync generator (random weights, no I/O).

Measures the steady-state per-chunk work of ``StyleLipSync.infer``: audio encoder + face encoder + decoder
on a chunk of frames (the reference encoder runs once per video and MaLS is negligible; both are reported
separately). Prints frames/s per config; ``--write`` appends a dated section to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_model.py                  # paper + tiny, chunk 8, fp32
    .venv/bin/python benchmarks/bench_model.py --config tiny --iters 20
    .venv/bin/python benchmarks/bench_model.py --modconv both --write
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from stylelipsync.models import StyleLipSync, StyleLipSyncConfig

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
CONFIGS: dict[str, Callable[[], StyleLipSyncConfig]] = {
    "paper": StyleLipSyncConfig.paper,
    "tiny": StyleLipSyncConfig.tiny,
}


@dataclass
class Result:
    """Timings of one (config, modconv path) pair, seconds per chunk unless noted."""

    config: str
    modconv: str
    batch: int
    audio: float
    face: float
    decode: float
    reference_once: float
    gflop_per_frame: float
    cpu_per_chunk: float

    @property
    def per_chunk(self) -> float:
        return self.audio + self.face + self.decode

    @property
    def fps(self) -> float:
        return self.batch / self.per_chunk


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_description() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"CPU {cpu_model()}, {cores} usable cores (os.cpu_count() = {os.cpu_count()}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
        f"1-min load average {os.getloadavg()[0]:.1f} (the cores are shared)"
    )


def median_time(fn: Callable[[], object], iters: int, warmup: int) -> tuple[float, float]:
    """Median wall-clock and process-CPU seconds of ``fn`` (CPU time is less sensitive to other users)."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(iters):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


@torch.no_grad()
def bench(name: str, modconv: str, batch: int, iters: int, warmup: int) -> Result:
    torch.manual_seed(0)
    model = StyleLipSync(CONFIGS[name]()).eval().requires_grad_(False)
    model.fused_modconv = modconv == "fused"
    cfg = model.config
    res = cfg.resolution
    frames = torch.rand(batch, 3, res, res) * 2 - 1
    mel = torch.randn(batch, cfg.mel_steps, cfg.mel_bins) - 3
    ref = torch.rand(1, 3, res, res) * 2 - 1
    w_ref = model.reference_styles(ref)[0]
    styles = model.mix_styles(model.audio_styles(mel), w_ref)
    features = model.face_features(frames)

    with FlopCounterMode(display=False) as counter:
        model.audio_styles(mel[:1])
        model.decode(styles[:1], [f[:1] for f in features])
        model.face_features(frames[:1])
    gflop = counter.get_total_flops() / 1e9

    audio, audio_cpu = median_time(lambda: model.audio_styles(mel), iters, warmup)
    face, face_cpu = median_time(lambda: model.face_features(frames), iters, warmup)
    decode, decode_cpu = median_time(lambda: model.decode(styles, features), iters, warmup)
    reference, _ = median_time(lambda: model.reference_styles(ref), max(1, iters // 2), 1)
    cpu = audio_cpu + face_cpu + decode_cpu
    return Result(name, modconv, batch, audio, face, decode, reference, gflop, cpu)


def format_table(results: list[Result]) -> str:
    lines = [
        "| config | modconv | chunk | frames/s | s/chunk | audio s | face s | decoder s | E_ref once s "
        "| GFLOP/frame | CPU s/chunk |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.config} | {r.modconv} | {r.batch} | {r.fps:.2f} | {r.per_chunk:.3f} | {r.audio:.3f} | "
            f"{r.face:.3f} | {r.decode:.3f} | {r.reference_once:.3f} | {r.gflop_per_frame:.1f} | "
            f"{r.cpu_per_chunk:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--batch", type=int, default=8, help="frames per chunk (official: 8)")
    parser.add_argument("--iters", type=int, default=3, help="timed repetitions per stage (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--modconv", choices=["fused", "nonfused", "both"], default="fused")
    parser.add_argument("--write", action="store_true", help=f"append the results to {RESULTS}")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    names = list(CONFIGS) if args.config == "all" else [args.config]
    paths = ["fused", "nonfused"] if args.modconv == "both" else [args.modconv]
    results = []
    for name in names:
        for path in paths:
            iters = args.iters if name == "paper" else max(args.iters, 10)
            result = bench(name, path, args.batch, iters, args.warmup)
            print(
                f"{name:6s} {path:8s} chunk {args.batch}: {result.fps:7.2f} frames/s "
                f"({result.per_chunk:.3f} s/chunk, {result.gflop_per_frame:.1f} GFLOP/frame)",
                flush=True,
            )
            results.append(result)

    table = format_table(results)
    print()
    print(machine_description())
    print(table)
    if args.write:
        stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        section = (
            f"\n## bench_model.py — {stamp}\n\n"
            f"Model-only forward (random weights, fp32, eval, no grad), median of timed repetitions. "
            f"frames/s = chunk / (audio + face + decoder) wall time; the reference encoder runs once per "
            f"video. CPU s/chunk is process CPU time (all threads); on an idle machine wall ≈ CPU / threads."
            f"\n\n"
            f"Machine: {machine_description()}\n\n{table}\n"
        )
        with RESULTS.open("a") as handle:
            handle.write(section)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
