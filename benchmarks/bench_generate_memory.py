"""Peak memory and speed of `stylelipsync generate` for a 10 s and a 60 s input (issue #4 acceptance).

Peers run out of host RAM on long videos (LatentSync: 64 GB for 2.5 min) because they accumulate frames. The
pipeline streams, so the peak resident set size (VmHWM) must not grow with the input's length. This script:

1. builds the inputs in a work folder: a shared talking-face clip looped ping-pong into 10 s and 60 s videos
   (written with `VideoWriter`) and the first 10 s / 60 s of a long speech file;
2. saves a tiny random-weight model (`StyleLipSyncConfig.tiny(64)`);
3. runs `generate` once per case in its own child process, which reports its VmHWM at exit;
4. prints peak RSS, frames/s and per-stage seconds; `--write` appends a dated section to RESULTS.md.

Cases: `10s` and `60s` (video as long as the audio), and `loop` (the clip's own 5 s under 60 s of audio:
ping-pong through the on-disk frame store).

    nice -n 10 .venv/bin/python benchmarks/bench_generate_memory.py --write
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CHILD = """
import atexit, os, sys
def report():
    status = open("/proc/self/status").read()
    with open(os.environ["BENCH_REPORT"], "w") as fh:
        fh.write(status)
atexit.register(report)
sys.argv = ["stylelipsync", *sys.argv[1:]]
from stylelipsync.cli import main
main()
"""


@dataclass
class Case:
    """One benchmark run."""

    name: str
    video: Path
    audio: Path
    seconds: float


@dataclass
class Measurement:
    """What one child process reported."""

    case: Case
    peak_mb: float
    wall: float
    frames: int
    fps: float
    stages: str
    exit_code: int


def build_inputs(work: Path, clip: Path, speech: Path, durations: list[int]) -> dict[int, tuple[Path, Path]]:
    """Ping-pong loops of `clip` and cuts of `speech`, one (video, audio) pair per duration in seconds."""
    import soundfile as sf

    from stylelipsync.media import VideoReader, VideoWriter, load_audio

    reader = VideoReader(clip)
    frames = [f.image for f in reader]
    loop = frames + frames[-2:0:-1]
    wave = load_audio(speech, 16000)
    pairs = {}
    for seconds in durations:
        video, audio = work / f"video_{seconds}s.mp4", work / f"speech_{seconds}s.wav"
        if not video.exists():
            count = round(seconds * reader.fps)
            with VideoWriter(
                video, reader.fps, reader.width, reader.height, crf=18, preset="veryfast"
            ) as out:
                for k in range(count):
                    out.write(loop[k % len(loop)])
        if not audio.exists():
            if len(wave) < seconds * 16000:
                raise SystemExit(f"{speech} is shorter than {seconds} s")
            sf.write(str(audio), wave[: seconds * 16000], 16000, subtype="PCM_16")
        pairs[seconds] = (video, audio)
    return pairs


def make_model(work: Path) -> Path:
    """A tiny random-weight model directory."""
    import torch

    from stylelipsync.models import StyleLipSync, StyleLipSyncConfig

    path = work / "tiny_model"
    if not (path / "config.json").exists():
        torch.manual_seed(0)
        StyleLipSync(StyleLipSyncConfig.tiny(64)).save_pretrained(path)
    return path


def run_case(case: Case, model: Path | None, work: Path, batch_size: int) -> Measurement:
    """Run `generate` in a child process (the bank engine when `model` is None); parse its summary and its
    VmHWM."""
    report = work / f"status_{case.name}.txt"
    output = work / f"out_{case.name}.mp4"
    engine = ["--engine", "bank"] if model is None else ["-c", str(model)]
    args = [
        "--debug", "generate", "-v", str(case.video), "-a", str(case.audio), "-o", str(output),
        *engine, "--batch-size", str(batch_size), "--overwrite",
    ]  # fmt: skip
    env = {**os.environ, "BENCH_REPORT": str(report)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    status = report.read_text() if report.exists() else ""
    hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
    summary = re.search(r"(\d+) frames at [\d.]+ fps.*?\((\d+(?:\.\d+)?) frames/s\)", proc.stdout, re.S)
    stages = re.search(r"stages: (.*)", proc.stdout)
    if proc.returncode != 0 or hwm is None or summary is None:
        sys.stderr.write(proc.stdout + proc.stderr[-3000:])
    output.unlink(missing_ok=True)
    return Measurement(
        case=case,
        peak_mb=int(hwm.group(1)) / 1024 if hwm else float("nan"),
        wall=wall,
        frames=int(summary.group(1)) if summary else 0,
        fps=float(summary.group(2)) if summary else float("nan"),
        stages=stages.group(1) if stages else "",
        exit_code=proc.returncode,
    )


def table(results: list[Measurement]) -> str:
    """Markdown table of the measurements."""
    lines = [
        "| case | audio | frames | peak RSS (VmHWM) | frames/s (end to end) | wall incl. start-up |",
        "|---|---|---|---|---|---|",
    ]
    for m in results:
        lines.append(
            f"| {m.case.name} | {m.case.seconds:g} s | {m.frames} | {m.peak_mb:.0f} MiB | {m.fps:.1f} | "
            f"{m.wall:.0f} s |"
        )
    return "\n".join(lines)


def section(
    results: list[Measurement],
    clip: Path,
    speech: Path,
    batch_size: int,
    load: str,
    note: str = "",
    engine: str = "stylelipsync",
) -> str:
    """A dated RESULTS.md section."""
    by_name = {m.case.name: m for m in results}
    lines = [
        f"## generate ({engine} engine): peak memory and speed, 10 s vs 60 s ({dt.date.today().isoformat()})",
        "",
        f"`benchmarks/bench_generate_memory.py`: `{clip.name}` looped ping-pong to the audio's length, "
        f"speech from `{speech.name}`, "
        + (
            "tiny random-weight model (`StyleLipSyncConfig.tiny(64)`), "
            if engine == "stylelipsync"
            else "the mouth-bank engine (`--engine bank`), "
        )
        + f"`--batch-size {batch_size}`, CPU, one child process per case (peak = its VmHWM at exit). "
        f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs (load average at start: "
        f"{load}); run under `nice -n 10`.",
        "",
        table(results),
        "",
    ]
    if "10s" in by_name and "60s" in by_name:
        ratio = by_name["60s"].peak_mb / by_name["10s"].peak_mb
        lines.append(f"Peak RSS 60 s / 10 s: **{ratio:.3f}** (acceptance: ≤ 1.2).")
    if "loop" in by_name:
        ratio = by_name["loop"].peak_mb / by_name["10s"].peak_mb
        lines.append(f"Loop case (5 s video, 60 s audio, frames from the on-disk store) / 10 s: {ratio:.3f}.")
    lines += ["", "Seconds per stage:", ""]
    lines += [f"- {m.case.name}: {m.stages}" for m in results]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", type=Path, default=MEDIA / "vrt_face_2.mp4")
    parser.add_argument("--speech", type=Path, default=MEDIA / "musetalk_eng.wav")
    parser.add_argument("--cases", default="10s,60s,loop", help="comma-separated subset of 10s,60s,loop")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--work", type=Path, help="folder for inputs and outputs (default: a temporary one)")
    parser.add_argument(
        "--write", action="store_true", help="append a dated section to benchmarks/RESULTS.md"
    )
    parser.add_argument("--note", default="", help="a remark to add at the end of the section")
    parser.add_argument(
        "--engine", choices=["stylelipsync", "bank"], default="stylelipsync",
        help="stylelipsync: a tiny random-weight model; bank: the mouth-bank engine (no model)",
    )  # fmt: skip
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        wanted = args.cases.split(",")
        pairs = build_inputs(work, args.clip, args.speech, [10, 60])
        model = make_model(work) if args.engine == "stylelipsync" else None
        cases = {
            "10s": Case("10s", *pairs[10], 10),
            "60s": Case("60s", *pairs[60], 60),
            "loop": Case("loop", args.clip, pairs[60][1], 60),
        }
        results = []
        for name in wanted:
            m = run_case(cases[name], model, work, args.batch_size)
            print(f"{name}: peak {m.peak_mb:.0f} MiB, {m.frames} frames, {m.fps:.1f} frames/s")
            print(f"  stages: {m.stages}", flush=True)
            results.append(m)
    print(table(results))
    text = section(results, args.clip, args.speech, args.batch_size, load, args.note, args.engine)
    print(text)
    if args.write:
        with RESULTS.open("a") as fh:
            fh.write("\n" + text)
        print(f"appended to {RESULTS}")
    if any(m.exit_code != 0 for m in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
