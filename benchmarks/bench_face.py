"""Speed and stability of the face stage (stylelipsync.face) on shared clips.

For a 1080p clip (latentsync_demo2_video.mp4, 1080×1920, native) and the same clip scaled to 720p
(720×1280), it times: decoding alone; decoding + `track_face` (the first pass: FaceMesh on a crop around the
last face, BlazeFace only when the face is lost); full `FaceDetector.detect` per frame (BlazeFace + FaceMesh,
what a tracker without tracking would cost); and the per-frame second-pass work (crop warp, pose-aware mask,
keep-mask, paste-back). Jitter is measured on the stillest talking head (styletalk_KristiNoem.mp4) and on
the benchmark clip. Prints a table; `--write` appends a dated section to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_face.py
    .venv/bin/python benchmarks/bench_face.py --frames 150 --write
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import av
import cv2
import numpy as np

from stylelipsync.face.crop import crop_transforms, similarity_scale, warp_landmarks, warp_to_crop
from stylelipsync.face.detect import FaceDetector
from stylelipsync.face.geometry import FaceModel
from stylelipsync.face.landmarks import LEFT_EYE_INNER, LEFT_EYE_OUTER, NASION, PRONASALE, RIGHT_EYE_INNER
from stylelipsync.face.landmarks import RIGHT_EYE_OUTER as R_OUT
from stylelipsync.face.mask import PoseMasker, keep_mask
from stylelipsync.face.paste import paste_back
from stylelipsync.face.track import FaceTrack, track_face

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
MEDIA = ROOT.parent / "shared" / "media"
CLIP = "latentsync_demo2_video.mp4"
STILL = "styletalk_KristiNoem.mp4"
T = TypeVar("T")
JITTER_POINTS = [R_OUT, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER, NASION, PRONASALE]


def frames(name: str, count: int, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Decode `count` RGB frames, optionally scaled to `size` (w, h) with area averaging."""
    with av.open(str(MEDIA / name)) as container:
        for frame in itertools.islice(container.decode(video=0), count):
            rgb = frame.to_ndarray(format="rgb24")
            yield rgb if size is None else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def fps_of(name: str) -> float:
    """Average frame rate of a shared clip."""
    with av.open(str(MEDIA / name)) as container:
        return float(container.streams.video[0].average_rate)


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """fn's result and its wall time in seconds."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def jitter(track: FaceTrack) -> dict[str, float]:
    """Noise (RMS second difference / √6) and residual around a 1 s moving average, eye/nose points, at
    256² crop scale, for raw and smoothed landmarks."""
    scale = np.array([similarity_scale(m) for m in crop_transforms(track)])[:, None, None]
    out: dict[str, float] = {}
    window = max(3, round(track.fps))
    kernel = np.ones(window) / window
    for key, lm in (("raw", track.raw), ("smoothed", track.landmarks)):
        pts = lm[:, JITTER_POINTS, :2] * scale
        d2 = pts[2:] - 2 * pts[1:-1] + pts[:-2]
        out[f"noise_{key}"] = float(np.sqrt((d2**2).mean() / 6))
        trend = np.apply_along_axis(lambda x: np.convolve(x, kernel, mode="valid"), 0, pts)
        half = window // 2
        resid = pts[half : half + trend.shape[0]] - trend
        out[f"detrended_{key}"] = float(np.sqrt((resid**2).sum(-1).mean()))
    return out


def second_pass(name: str, track: FaceTrack, count: int, size: tuple[int, int] | None) -> dict[str, float]:
    """Per-frame crop, mask, keep-mask and paste-back timings (ms) and mask area (% of the crop)."""
    model = FaceModel.from_landmarks(track.landmarks, track.valid)
    masker = PoseMasker(model)
    crops = crop_transforms(track)
    t_crop = t_mask = t_keep = t_paste = 0.0
    areas = []
    n = 0
    for t, frame in enumerate(frames(name, count, size)):
        if not track.valid[t]:
            continue
        crop, dt_crop = timed(warp_to_crop, frame, crops[t])
        mask, dt_mask = timed(masker, warp_landmarks(track.landmarks[t], crops[t]))
        _, dt_keep = timed(keep_mask, mask)
        _, dt_paste = timed(paste_back, frame, crop, crops[t], mask)
        t_crop, t_mask, t_keep, t_paste = (
            t_crop + dt_crop,
            t_mask + dt_mask,
            t_keep + dt_keep,
            t_paste + dt_paste,
        )
        areas.append(100 * float((mask > 0).mean()))
        n += 1
    n = max(n, 1)
    return {
        "crop_ms": 1000 * t_crop / n,
        "mask_ms": 1000 * t_mask / n,
        "keep_ms": 1000 * t_keep / n,
        "paste_ms": 1000 * t_paste / n,
        "area_min": min(areas),
        "area_max": max(areas),
    }


def bench(label: str, count: int, size: tuple[int, int] | None, detect_frames: int) -> dict[str, float | str]:
    """All timings and figures for one clip size (MediaPipe graphs built and warmed up before timing)."""
    fps = fps_of(CLIP)
    _, t_decode = timed(lambda: sum(1 for _ in frames(CLIP, count, size)))
    det, t_init = timed(FaceDetector)
    with det:
        det.detect(next(frames(CLIP, 1, size)))
        track, t_track = timed(track_face, frames(CLIP, count, size), fps=fps, detector=det)
        sample = list(frames(CLIP, detect_frames, size))
        start = time.perf_counter()
        found = sum(len(det.detect(f)) for f in sample)
        t_detect = time.perf_counter() - start
    track_only = t_track - t_decode
    row: dict[str, float | str] = {
        "label": label,
        "frames": count,
        "init_s": t_init,
        "valid": int(track.valid.sum()),
        "decode_fps": count / t_decode,
        "decode_track_fps": count / t_track,
        "track_fps": count / track_only if track_only > 0 else float("nan"),
        "detect_fps": detect_frames / t_detect,
        "faces_per_frame": found / detect_frames,
    }
    row.update(second_pass(CLIP, track, count, size))
    row.update(jitter(track))
    return row


def main() -> None:
    """Run both sizes and the still-head jitter; print, and append with --write."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per clip (default 150 = 6 s)")
    parser.add_argument("--detect-frames", type=int, default=30, help="frames for the full-detection timing")
    parser.add_argument("--write", action="store_true", help="append the results to benchmarks/RESULTS.md")
    parser.add_argument(
        "--note", default="", help="a sentence appended to the section (e.g. why it was rerun)"
    )
    args = parser.parse_args()

    rows = [
        bench("1080p (1080×1920)", args.frames, None, args.detect_frames),
        bench("720p (720×1280, scaled)", args.frames, (720, 1280), args.detect_frames),
    ]
    still = track_face(frames(STILL, 150), fps=fps_of(STILL))
    still_j = jitter(still)

    lines = [
        "",
        f"## bench_face.py — {dt.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"`{CLIP}` (first {args.frames} frames, 25 fps, one small face), Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs shared with other jobs while measured (load average "
        f"{os.getloadavg()[0]:.1f}: times are upper bounds). "
        "`track` = `track_face` minus decoding (FaceMesh on a crop around the last face; BlazeFace only when "
        "lost); `detect` = `FaceDetector.detect` on every frame (BlazeFace + FaceMesh, no tracking); "
        "second pass per frame in ms. Jitter at 256² crop scale over eye corners, nasion and pronasale: "
        "noise = RMS second difference/√6 (frame-to-frame noise), resid = RMS distance from a 1 s moving "
        "average (includes real head motion).",
        "",
        "| clip | decode fps | decode+track fps | track fps | detect fps | crop ms | mask ms | keep-mask ms "
        "| paste ms | mask area % | noise raw→smoothed px | resid raw→smoothed px |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['decode_fps']:.1f} | {r['decode_track_fps']:.1f} | {r['track_fps']:.1f} "
            f"| {r['detect_fps']:.1f} | {r['crop_ms']:.1f} | {r['mask_ms']:.1f} | {r['keep_ms']:.1f} "
            f"| {r['paste_ms']:.1f} | {r['area_min']:.1f}–{r['area_max']:.1f} "
            f"| {r['noise_raw']:.3f}→{r['noise_smoothed']:.3f} "
            f"| {r['detrended_raw']:.2f}→{r['detrended_smoothed']:.2f} |"
        )
    lines += [
        "",
        f"Still head (`{STILL}`, 150 frames, 256²): noise {still_j['noise_raw']:.3f} px raw → "
        f"{still_j['noise_smoothed']:.3f} px smoothed; residual around a 1 s moving average "
        f"{still_j['detrended_raw']:.2f} → {still_j['detrended_smoothed']:.2f} px. Frames with a valid face: "
        + ", ".join(f"{r['label']} {r['valid']}/{r['frames']}" for r in rows)
        + ". Building the MediaPipe graphs (`FaceDetector()`) takes "
        + ", ".join(f"{r['init_s']:.2f} s" for r in rows)
        + " once per video."
        + (f" {args.note}" if args.note else ""),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        with RESULTS.open("a", encoding="utf-8") as fh:
            fh.write(text)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
