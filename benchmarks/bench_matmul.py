"""Dense matmul speed in fp32 and bf16 (torch, all usable cores): the yardstick of bench_model.py.

Square matmuls of growing size; the best GFLOP/s over the sizes is the peak the model's achieved GFLOP/s is
compared with. Sizes grow until one product takes ``--min-seconds`` (or ``--max-size`` is reached), so a
dtype without fast kernels on this CPU (bf16 on AVX2-only machines runs at ~1 GFLOP/s) costs seconds, not
an hour. Wall time is what counts; process CPU time is printed beside it (on an idle machine CPU ≈ wall ×
threads; a gap means other jobs were using the cores).

    .venv/bin/python benchmarks/bench_matmul.py
    .venv/bin/python benchmarks/bench_matmul.py --dtype fp32 --threads 1
    .venv/bin/python benchmarks/bench_matmul.py --write          # append a dated section to RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class MatmulResult:
    """Best dense matmul speed of one dtype over the sizes tried."""

    dtype: str
    gflops: float
    size: int
    cpu_gflops: float
    tried: list[tuple[int, float]]


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> str:
    """The vector-extension flags that decide fp32/bf16 kernel speed (AVX2, AVX512*, AMX*)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                keep = [f for f in flags if f.startswith(("avx2", "avx512", "amx", "fma"))]
                return " ".join(sorted(keep)) or "none of avx2/avx512/amx"
    except OSError:
        pass
    return "unknown"


def machine_description() -> str:
    """One line: CPU, cores, torch, threads, load (for RESULTS.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"CPU {cpu_model()} ({cpu_flags()}), {cores} usable cores (os.cpu_count() = {os.cpu_count()}), "
        f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}), "
        f"{torch.get_num_threads()} intra-op threads, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, 1-min load average {os.getloadavg()[0]:.1f}"
    )


def measure(dtype: str, min_seconds: float = 0.25, max_size: int = 4096, repeats: int = 3) -> MatmulResult:
    """Best matmul GFLOP/s of `dtype` (median of `repeats` products per size, sizes 256, 512, …)."""
    torch.manual_seed(0)
    tried: list[tuple[int, float]] = []
    best = (0.0, 0, 0.0)
    size = 256
    while size <= max_size:
        a = torch.randn(size, size, dtype=DTYPES[dtype])
        b = torch.randn(size, size, dtype=DTYPES[dtype])
        a @ b  # warm-up: kernel selection, first-touch of the output
        walls, cpus = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            a @ b
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - start_cpu)
        wall = statistics.median(walls)
        flop = 2.0 * size**3
        gflops = flop / wall / 1e9
        cpu_gflops = flop / (statistics.median(cpus) / torch.get_num_threads()) / 1e9
        tried.append((size, gflops))
        if gflops > best[0]:
            best = (gflops, size, cpu_gflops)
        if wall >= min_seconds:
            break
        size *= 2
    return MatmulResult(dtype, best[0], best[1], best[2], tried)


def format_table(results: list[MatmulResult]) -> str:
    lines = [
        "| dtype | peak GFLOP/s (wall) | at size | GFLOP/s per thread-second of CPU "
        "| sizes tried (GFLOP/s) |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results:
        tried = ", ".join(f"{n}: {g:.1f}" for n, g in r.tried)
        lines.append(f"| {r.dtype} | {r.gflops:.1f} | {r.size} | {r.cpu_gflops:.1f} | {tried} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dtype", choices=[*DTYPES, "all"], default="all")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: all cores)"
    )
    parser.add_argument("--max-size", type=int, default=4096)
    parser.add_argument(
        "--min-seconds", type=float, default=0.25, help="stop growing once a product takes this"
    )
    parser.add_argument("--write", action="store_true", help=f"append the results to {RESULTS}")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtypes = list(DTYPES) if args.dtype == "all" else [args.dtype]
    results = []
    for dtype in dtypes:
        result = measure(dtype, args.min_seconds, args.max_size)
        print(f"matmul {dtype}: {result.gflops:.1f} GFLOP/s (size {result.size})", flush=True)
        results.append(result)
    table = format_table(results)
    print()
    print(machine_description())
    print(table)
    if args.write:
        stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        section = (
            f"\n## bench_matmul.py — {stamp}\n\n"
            "Dense square matmul (torch, all intra-op threads), median of 3 products per size, sizes "
            "doubling from 256 until a product takes 0.25 s; peak = best size. This is the yardstick of "
            f"bench_model.py's achieved GFLOP/s.\n\nMachine: {machine_description()}\n\n{table}\n"
        )
        with RESULTS.open("a") as handle:
            handle.write(section)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
