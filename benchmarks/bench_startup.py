"""Time from starting the README main command to its first encoded frame, and where that time goes.

Runs ``stylelipsync generate`` (the README's main command: the default bank engine on a shared clip) in a
fresh subprocess with ``STYLELIPSYNC_STARTUP_TRACE=1``, which makes the package print a wall-clock mark per
start-up step (`stylelipsync.startup_trace`): command parsed, pipeline imported, engine ready, inputs probed,
face detector ready, first frame tracked, tracked, planned, first frame encoded. The clock starts just before
the subprocess is spawned, so interpreter start and every import count. One untimed run first warms the disk
cache.

    python benchmarks/bench_startup.py                 # 3 timed runs, prints the steps and the best/median
    python benchmarks/bench_startup.py --runs 5 --threads 2
    python benchmarks/bench_startup.py --importtime    # also: the slowest imports (python -X importtime)

Self-contained: the standard library only; it finds the `stylelipsync` command next to this Python (or runs
the CLI through this Python) and the shared media beside the checkout (`--media`). Results: RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VIDEO = "sadtalker_WDA_KatieHill_000.mp4"
AUDIO = "sls_RoyBlunt_0_10s.wav"
PREFIX = "stylelipsync-startup"
FIRST_FRAME = "first frame encoded"
MARK = re.compile(PREFIX + r" (\d+\.\d+) ([^\r\n]+)")


def command(media: Path, output: Path) -> list[str]:
    """The README main command's `generate` call, with this Python's stylelipsync."""
    exe = Path(sys.executable).parent / "stylelipsync"
    launcher = (
        [str(exe)] if exe.is_file() else [sys.executable, "-c", "from stylelipsync.cli import main; main()"]
    )
    args = ["generate", "--video", str(media / VIDEO), "--audio", str(media / AUDIO), "--output", str(output)]
    return launcher + args


def run_once(media: Path, work: Path, threads: int | None) -> tuple[list[tuple[float, str]], float]:
    """One run: (seconds since spawn of each start-up mark, in order), total wall seconds."""
    output = work / "out.mp4"
    output.unlink(missing_ok=True)
    env = dict(os.environ, STYLELIPSYNC_STARTUP_TRACE="1")
    cmd = command(media, output)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    total = time.time() - start
    if proc.returncode != 0 or not output.is_file():
        sys.exit(f"the command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    # progress bars share stderr without newlines: a mark can follow one on the same line
    marks = [(float(m[1]) - start, m[2]) for m in MARK.finditer(proc.stderr)]
    if not any(step == FIRST_FRAME for _, step in marks):
        sys.exit(
            "no start-up marks in the command's stderr: is this checkout's stylelipsync the one imported? "
            "(run from the checkout with PYTHONPATH=src, or pip install -e .)"
        )
    return marks, total


def first_frame(marks: list[tuple[float, str]]) -> float:
    return next(t for t, step in marks if step == FIRST_FRAME)


def import_report(top: int = 15) -> None:
    """The slowest top-level imports of `generate`'s modules in a fresh interpreter (cumulative seconds)."""
    code = "import stylelipsync.cli, stylelipsync.pipelines, stylelipsync.pipelines.engines.bank"
    code += ", stylelipsync.face.detect"
    code += "; stylelipsync.face.detect.FaceDetector().close()"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 1:
            rows.append((int(cumulative) / 1e6, "  " * depth + name.strip()))
    print(f"\nslowest imports (python -X importtime, cumulative s, top {top}):")
    for seconds, name in sorted(rows, reverse=True)[:top]:
        print(f"  {seconds:6.2f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (after one untimed warm-up run)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the command (default: unset)")
    parser.add_argument("--importtime", action="store_true", help="also list the slowest imports")
    args = parser.parse_args()
    if not (args.media / VIDEO).is_file():
        sys.exit(f"{args.media / VIDEO}: not found; pass --media DIR (the shared media folder)")
    work = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    try:
        run_once(args.media, work, args.threads)  # warm the disk cache
        runs = [run_once(args.media, work, args.threads) for _ in range(args.runs)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best_marks, _ = min(runs, key=lambda r: first_frame(r[0]))
    print(f"cpus: {os.cpu_count()}  load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("start-up steps of the fastest run (seconds since the command was started):")
    previous = 0.0
    for t, step in best_marks:
        print(f"  {t:6.2f}  (+{t - previous:5.2f})  {step}")
        previous = t
    ttff = [first_frame(m) for m, _ in runs]
    totals = [total for _, total in runs]
    print(f"whole command: best {min(totals):.2f} s, median {statistics.median(totals):.2f} s")
    print(
        f"time to first encoded frame: best {min(ttff):.2f} s, median {statistics.median(ttff):.2f} s "
        f"over {len(ttff)} runs"
    )
    if args.importtime:
        import_report()


if __name__ == "__main__":
    main()
