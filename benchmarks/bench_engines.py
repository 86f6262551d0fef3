"""The README main command with each engine, side by side in one run: frames/s of bank vs stylelipsync.

Runs `stylelipsync generate` on the README's clip and speech as a user does (a fresh process each, so
start-up counts in the wall time), alternating the engines `--repeat` times, and reports the pipeline's own
frames/s (tracking included) and the wall time per run. Issue #19 asks for the bank engine at ≥ 2× the
frames/s of the stylelipsync demo engine.

    nice .venv/bin/python benchmarks/bench_engines.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
VIDEO = MEDIA / "sadtalker_WDA_KatieHill_000.mp4"
AUDIO = MEDIA / "sls_RoyBlunt_0_10s.wav"
ENGINES = {"bank": [], "stylelipsync": ["--engine", "stylelipsync"]}


def run(engine: str, out: Path) -> tuple[float, float]:
    """(frames/s from the summary, wall seconds) of one `generate` process."""
    cmd = [
        sys.executable, "-m", "stylelipsync.cli", "generate", "--video", str(VIDEO), "--audio", str(AUDIO),
        "--output", str(out), "--overwrite", *ENGINES[engine],
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    found = re.search(r"\(([\d.]+) frames/s\)", proc.stdout)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"{engine} failed:\n{proc.stdout}\n{proc.stderr[-2000:]}")
    return float(found.group(1)), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    runs: dict[str, list[tuple[float, float]]] = {e: [] for e in ENGINES}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for engine in ENGINES:
                fps, wall = run(engine, Path(tmp) / f"{engine}.mp4")
                runs[engine].append((fps, wall))
                print(f"{engine}: {fps:.1f} frames/s, {wall:.1f} s wall", flush=True)
    best = {e: max(r[0] for r in runs[e]) for e in ENGINES}
    walls = {e: min(r[1] for r in runs[e]) for e in ENGINES}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    lines = [
        f"## README main command: bank vs stylelipsync engine ({dt.date.today().isoformat()}, "
        f"commit {commit.stdout.strip()})",
        "",
        f"`benchmarks/bench_engines.py`: `generate --video {VIDEO.name} --audio {AUDIO.name}` (251 output "
        f"frames, 512²), each engine run {args.repeat}× alternately in fresh processes on 2 CPU cores "
        f"(load average at start {load}); best of the runs.",
        "",
        "| engine | frames/s (pipeline, tracking included) | wall incl. start-up |",
        "|---|---|---|",
    ]
    lines += [f"| {e} | {best[e]:.1f} | {walls[e]:.1f} s |" for e in ENGINES]
    ratio = best["bank"] / best["stylelipsync"]
    lines += ["", f"bank / stylelipsync: **{ratio:.1f}×** frames/s (acceptance: ≥ 2×)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        with args.results.open("a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
