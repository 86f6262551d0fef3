"""Do the same frames encode to the same file? x264 as it comes vs as `VideoWriter` runs it (`x264_cpu`).

For each shared clip, its first frames are encoded several times at the writer's settings (CRF 18,
`veryfast`), with blocks of random bytes allocated and freed between frames (what rendering does in a real
run), by x264 with every instruction set it detects, with those `VideoWriter` gives it (less AVX-512) and,
for the cost of the other fix, without MB-tree. Reported: distinct files among the runs, size, PSNR of the
luma against the encoder's input, ms of encoding a frame (the fastest run).

    python benchmarks/encoder_repeatability.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import subprocess
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from stylelipsync.media import VideoReader, x264_cpu

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
CLIPS = (
    "pcavs_Audio_Source_00104.mp4",
    "vrt_face_4.mp4",
    "vrt_face_2.mp4",
    "sadtalker_WDA_KatieHill_000.mp4",
)


@dataclass
class Encoded:
    """Runs of one setting on one clip."""

    distinct: int
    kib: float
    psnr: float
    ms_per_frame: float


def yuv_frames(path: Path, count: int) -> list[av.VideoFrame]:
    """The first `count` frames of `path` as the writer hands them to x264 (even size, BT.709 limited)."""
    reader = VideoReader(path)
    try:
        images = [f.image for f, _ in zip(reader, range(count), strict=False)]
    finally:
        reader.close()
    h, w = images[0].shape[:2]
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    return [
        av.VideoFrame.from_ndarray(
            np.ascontiguousarray(np.pad(im, pad, mode="edge")), format="rgb24"
        ).reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
        for im in images
    ]


def encode(frames: list[av.VideoFrame], crf: int, params: str | None, seed: int) -> tuple[list[bytes], float]:
    """Packets of one encode and its seconds; random bytes are left in freed memory between frames."""
    rng = np.random.default_rng(seed)
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = frames[0].width, frames[0].height
    codec.pix_fmt = "yuv420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"crf": str(crf), "preset": "veryfast", **({"x264-params": params} if params else {})}
    packets: list[bytes] = []
    seconds = 0.0
    for i, frame in enumerate(frames):
        frame.pts = i
        start = time.perf_counter()
        packets += [bytes(p) for p in codec.encode(frame)]
        seconds += time.perf_counter() - start
        junk = [rng.integers(0, 256, int(n), np.uint8).tobytes() for n in rng.integers(4096, 1 << 18, 8)]
        del junk
    start = time.perf_counter()
    packets += [bytes(p) for p in codec.encode(None)]
    return packets, seconds + time.perf_counter() - start


def luma_psnr(packets: list[bytes], frames: list[av.VideoFrame]) -> float:
    decoder = av.CodecContext.create("h264", "r")
    decoded = [f for p in packets for f in decoder.decode(av.Packet(p))] + list(decoder.decode(None))
    h = frames[0].height
    mse = np.mean(
        [
            np.mean((d.to_ndarray()[:h].astype(np.float64) - f.to_ndarray()[:h].astype(np.float64)) ** 2)
            for d, f in zip(decoded, frames, strict=True)
        ]
    )
    return float(10 * np.log10(255.0**2 / mse))


def measure(frames: list[av.VideoFrame], crf: int, params: str | None, runs: int) -> Encoded:
    files, seconds = [], []
    for seed in range(runs):
        packets, s = encode(frames, crf, params, seed)
        files.append(packets)
        seconds.append(s)
    digests = {hashlib.sha256(b"".join(p)).hexdigest() for p in files}
    return Encoded(
        distinct=len(digests),
        kib=sum(len(p) for p in files[0]) / 1024,
        psnr=luma_psnr(files[0], frames),
        ms_per_frame=min(seconds) / len(frames) * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--results", type=Path, help="Append the Markdown section to this file.")
    args = parser.parse_args()
    detected = x264_cpu.detected()
    asm = x264_cpu.encoder_asm()
    settings = {
        "x264 as it comes": (18, None),
        "`VideoWriter` (less AVX-512)": (18, f"asm={asm}" if asm else None),
        "no MB-tree": (18, "mbtree=0"),
    }
    rows = []
    for name in CLIPS:
        frames = yuv_frames(MEDIA / name, args.frames)
        for setting, (crf, params) in settings.items():
            e = measure(frames, crf, params, args.runs)
            size = f"{frames[0].width}×{frames[0].height}"
            rows.append(
                f"| `{name}` ({size}) | {setting} | {e.distinct} of {args.runs} | "
                f"{e.kib:.1f} | {e.psnr:.2f} | {e.ms_per_frame:.2f} |"
            )
            print(rows[-1], flush=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    text = (
        f"\n## encoder_repeatability.py — {dt.date.today()} — commit {commit}\n\n"
        f"First {args.frames} frames of each clip encoded {args.runs} times (CRF 18 `veryfast` unless said), "
        "random bytes left in freed memory between frames. x264 detects: "
        f"`{' '.join(detected) or 'nothing reported'}`; `VideoWriter` gives it `{asm or 'its defaults'}`.\n\n"
        "| clip | setting | distinct files | KiB | PSNR-Y dB | ms/frame |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    print(text)
    if args.results is not None:
        with args.results.open("a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
