"""The plain `model.infer(frames, mel, ref, chunk_size=8)` call against the reference operators, side by side.

The paper config (256², random weights, fp32), T = 16 frames, chunks of 8, best of `--repeats` calls of each,
alternating, in one process on the same inputs: the way issue #24's independent run compared it with the
official implementation (which this machine does not have; `set_kernels("reference")` runs the official
operators: NCHW, grouped modulated convolution, zero-insertion FIR, the path the official-equivalence test
checks). Reports wall and CPU seconds per frame, minor page faults, OMP_WAIT_POLICY and the load average.

`--official DIR` compares with the official implementation itself instead: DIR holds the official code
(github.com/syunar/StyleLipSync at 7eb5e40, with stylegan2-ada-pytorch's `torch_utils` and `dnnlib` beside
its `models/`; on CPU its custom ops run their reference code). Its generator is built with random
weights, its state dict goes through `load_official_checkpoint`, and its own `inference()` (decoder chunks
of `--chunk`, under `torch.no_grad()` as its demo calls it) runs alternately with ours on the same inputs.

It imports `stylelipsync` before `torch`, as a user's script would, so the package's default
OMP_WAIT_POLICY=PASSIVE applies; `--spin` runs it with OpenMP's default (spinning) policy instead, to show
what that costs on a busy CPU.

    .venv/bin/python benchmarks/bench_infer.py               # paper config, T=16, chunk 8, best of 2
    .venv/bin/python benchmarks/bench_infer.py --spin        # the same with spinning OpenMP threads
    .venv/bin/python benchmarks/bench_infer.py --official ../official   # against the official code
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if "--spin" in sys.argv:
    os.environ["OMP_WAIT_POLICY"] = "ACTIVE"

import stylelipsync  # noqa: F401, I001  (first: it sets the OpenMP policy before torch loads)
import torch

from stylelipsync.models import StyleLipSync, StyleLipSyncConfig, load_official_checkpoint


def official_pair(directory: Path, chunk: int) -> tuple[StyleLipSync, Any]:
    """The official generator from `directory` with random weights, and ours loaded from its state dict."""
    if not (directory / "models" / "models_stylelipsync" / "stylelipsync.py").is_file():
        sys.exit(f"{directory}: no models/models_stylelipsync/stylelipsync.py; pass the official code's root")
    sys.path.insert(0, str(directory))
    official_module = importlib.import_module("models.models_stylelipsync.stylelipsync")
    with tempfile.TemporaryDirectory() as tmp:
        opt = argparse.Namespace(
            dim_w=512,
            dim_a=512,
            dim_l=512,
            input_nc=3,
            input_size=256,
            batch_size=chunk,
            rank="cpu",
            w_avg_path=str(Path(tmp) / "absent_w_avg.pth"),
            adaptation=False,
        )
        official = official_module.StyleLipSync(opt).eval()
        official.w_avg = torch.randn(512, generator=torch.Generator().manual_seed(2)) * 0.1
        ckpt = Path(tmp) / "G.pth"
        torch.save({"G": official.state_dict()}, ckpt)
        ours = load_official_checkpoint(ckpt, w_avg=official.w_avg)
    return ours, official


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="calls of each path; the best counts")
    parser.add_argument("--spin", action="store_true", help="OMP_WAIT_POLICY=ACTIVE (OpenMP's spinning)")
    parser.add_argument(
        "--official", type=Path, metavar="DIR", help="compare with the official code in DIR (see above)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    official = None
    if args.official is not None:
        model, official = official_pair(args.official, args.chunk)
    else:
        model = StyleLipSync(StyleLipSyncConfig.paper())
    other = "official" if official is not None else "reference"
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
        for path in ("infer", other):
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            cpu, wall = time.process_time(), time.perf_counter()
            if path == "infer":
                out = model.set_kernels("auto").infer(frames, mel, ref, chunk_size=args.chunk)
            elif official is not None:
                data = {"x": frames[None], "mel": mel[None], "ref": ref[None, None]}
                with torch.no_grad():
                    out = official.inference(data)["x_hat"]
            else:
                out = model.set_kernels("reference").infer(frames, mel, ref, chunk_size=args.chunk)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            outputs[path] = out
            best[path] = min(best.get(path, float("inf")), wall / t)
            print(
                f"  {path:9s} call {i}: {wall / t:.3f} s/frame wall, {cpu / t:.3f} CPU-s/frame, "
                f"{faults * 4096 / t / 1e9:.2f} GB of page faults/frame, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    diff = float((outputs["infer"] - outputs[other]).abs().max())
    ratio = best[other] / best["infer"]
    print(
        f"best of {args.repeats}: infer {best['infer']:.3f} s/frame, "
        f"{'official implementation' if official is not None else 'reference operators'} "
        f"{best[other]:.3f} s/frame: {ratio:.2f}x (max abs diff {diff:.1e})"
    )


if __name__ == "__main__":
    main()
