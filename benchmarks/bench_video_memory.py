"""Peak memory of streaming a long 1080p video through `VideoReader` (and `VideoWriter`).

Peers run out of host RAM on long videos because they keep every decoded frame in a list (a 60 s 1080p
clip is 1500 × 6.2 MB = 9.3 GB of RGB). This script encodes 10 s and 60 s synthetic 1080p25 H.264 clips in a
temporary folder, then reads each one in a fresh child process (so peaks do not mix) and reports the peak
resident set size (VmHWM) before and after the read. Flat numbers across durations show that memory does not
grow with video length. The `write` cases pipe the decoded frames straight into a `VideoWriter`.

    .venv/bin/python benchmarks/bench_video_memory.py            # 10 s and 60 s, read (native and 25 fps)
    .venv/bin/python benchmarks/bench_video_memory.py --write    # also append a section to RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
WIDTH, HEIGHT, FPS = 1920, 1080, 25


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (VmHWM; falls back to getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_video(path: Path, seconds: int) -> None:
    """Encode a moving 1080p test pattern (libx264 ultrafast) with PyAV, one frame in memory at a time."""
    import av

    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([(xx // 4) % 256, (yy // 4) % 256, ((xx + yy) // 8) % 256], axis=-1).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "28"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for k in range(seconds * FPS):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 8 * k, axis=1), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, FPS)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def child(path: Path, mode: str) -> dict[str, float | int | str]:
    """Run one case in this (fresh) process and return its measurements."""
    from stylelipsync.media import VideoReader, VideoWriter

    baseline = peak_rss_mb()
    start = time.perf_counter()
    count = 0
    checksum = 0
    if mode == "write":
        reader = VideoReader(path, fps=FPS)
        out = path.with_name(path.stem + "_out.mp4")
        with VideoWriter(out, FPS, reader.width, reader.height, preset="ultrafast", crf=28) as writer:
            for frame in reader:
                writer.write(frame.image)
                count += 1
        out.unlink()
    else:
        for frame in VideoReader(path, fps=FPS if mode == "read@25" else None):
            checksum += int(frame.image[0, 0, 0])
            count += 1
    elapsed = time.perf_counter() - start
    return {
        "mode": mode,
        "frames": count,
        "baseline_mb": round(baseline, 1),
        "peak_mb": round(peak_rss_mb(), 1),
        "seconds": round(elapsed, 2),
        "fps": round(count / elapsed, 1),
    }


def run_case(path: Path, mode: str) -> dict[str, float | int | str]:
    """Measure one case in a child process."""
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(path), "--mode", mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"append the results to {RESULTS}")
    parser.add_argument("--durations", type=int, nargs="+", default=[10, 60], help="clip lengths in seconds")
    parser.add_argument("--modes", nargs="+", default=["read", "read@25", "write"])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="read", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.mode)))
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_video_memory_") as folder:
        for seconds in args.durations:
            path = Path(folder) / f"synthetic_{seconds}s.mp4"
            start = time.perf_counter()
            make_video(path, seconds)
            size_mb = path.stat().st_size / 2**20
            print(f"encoded {seconds} s 1080p25 ({size_mb:.1f} MiB) in {time.perf_counter() - start:.1f} s")
            for mode in args.modes:
                result = run_case(path, mode)
                result["clip_s"] = seconds
                rows.append(result)
                print(json.dumps(result))

    header = "| clip | mode | frames | RSS after imports (MiB) | peak RSS (MiB) | growth (MiB) | frames/s |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        growth = float(r["peak_mb"]) - float(r["baseline_mb"])
        lines.append(
            f"| {r['clip_s']} s | {r['mode']} | {r['frames']} | {r['baseline_mb']} | {r['peak_mb']} | "
            f"{growth:.1f} | {r['fps']} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write:
        stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        cpus = os.cpu_count()
        frame_mb = WIDTH * HEIGHT * 3 / 2**20
        section = (
            f"\n## bench_video_memory.py — {stamp}\n\n"
            f"Synthetic 1920×1080 25 fps H.264 clips (libx264 ultrafast), {platform.python_version()}, "
            f"{cpus} CPUs (shared). Each case runs in its own process; peak RSS is VmHWM. `read` = native "
            f"frames, `read@25` = resampling path, `write` = read@25 piped into VideoWriter (ultrafast). One "
            f"RGB frame is {frame_mb:.1f} MiB; keeping all frames of the 60 s clip would need "
            f"{frame_mb * 60 * FPS / 1024:.1f} GiB.\n\n{table}\n"
        )
        with RESULTS.open("a") as handle:
            handle.write(section)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
