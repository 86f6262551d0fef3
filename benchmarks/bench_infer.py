"""The plain `model.infer(frames, mel, ref, chunk_size=8)` call against the reference operators, side by side.

The paper config (256², random weights, fp32), T = 16 frames, chunks of 8, best of `--repeats` calls of each,
alternating, in one process on the same inputs: the way issue #24's independent run compared it with the
official implementation (which this machine does not have; `reference_kernels()` runs the official
operators: NCHW, grouped modulated convolution, zero-insertion FIR, the path the official-equivalence test
checks). Reports wall and CPU seconds per frame, minor page faults, OMP_WAIT_POLICY and the load average.

It imports `stylelipsync` before `torch`, as a user's script would, so the package's default
OMP_WAIT_POLICY=PASSIVE applies; `--spin` runs it with OpenMP's default (spinning) policy instead, to show
what that costs on a busy CPU.

    .venv/bin/python benchmarks/bench_infer.py               # paper config, T=16, chunk 8, best of 2
    .venv/bin/python benchmarks/bench_infer.py --spin        # the same with spinning OpenMP threads
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

if "--spin" in sys.argv:
    os.environ["OMP_WAIT_POLICY"] = "ACTIVE"

import stylelipsync  # noqa: F401, I001  (first: it sets the OpenMP policy before torch loads)
import torch

from stylelipsync.models import StyleLipSync, StyleLipSyncConfig, reference_kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="calls of each path; the best counts")
    parser.add_argument("--spin", action="store_true", help="OMP_WAIT_POLICY=ACTIVE (OpenMP's spinning)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = StyleLipSync(StyleLipSyncConfig.paper())
    g = torch.Generator().manual_seed(1)
    t = args.frames
    frames = torch.rand(t, 3, 256, 256, generator=g) * 2 - 1
    mel = torch.randn(t, 20, 80, generator=g) - 3
    ref = torch.rand(3, 256, 256, generator=g) * 2 - 1
    print(
        f"paper config, T={t}, chunk {args.chunk}, fp32, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, cpus {os.cpu_count()}",
        flush=True,
    )
    best: dict[str, float] = {}
    outputs: dict[str, torch.Tensor] = {}
    for i in range(args.repeats):
        for path in ("infer", "reference"):
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            cpu, wall = time.process_time(), time.perf_counter()
            if path == "infer":
                out = model.infer(frames, mel, ref, chunk_size=args.chunk)
            else:
                with reference_kernels():
                    out = model.infer(frames, mel, ref, chunk_size=args.chunk)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            outputs[path] = out
            best[path] = min(best.get(path, float("inf")), wall / t)
            print(
                f"  {path:9s} call {i}: {wall / t:.3f} s/frame wall, {cpu / t:.3f} CPU-s/frame, "
                f"{faults * 4096 / t / 1e9:.2f} GB of page faults/frame, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    diff = float((outputs["infer"] - outputs["reference"]).abs().max())
    ratio = best["reference"] / best["infer"]
    print(
        f"best of {args.repeats}: infer {best['infer']:.3f} s/frame, reference operators "
        f"{best['reference']:.3f} s/frame: {ratio:.2f}x (max abs diff {diff:.1e})"
    )


if __name__ == "__main__":
    main()
