"""LSE-D / LSE-C: the SyncNet lip-sync scores as syncnet_python + the Wav2Lip evaluation scripts compute them.

Protocol (docs/evaluation.md, peers.md §6), kept quirk for quirk so numbers are comparable with papers:

* audio: 16 kHz mono as int16 values (not rescaled) → `python_speech_features.mfcc` with its defaults
  (13 coefficients, 100 Hz); video: 25 fps, raw 0–255 **BGR** pixels at 224 × 224, nothing normalised;
* `min_length = min(frames, samples // 640)`, windows t = 0 … `lastframe − 1` with
  `lastframe = min_length − 5` (the last possible window is dropped), 5 frames ↔ 20 MFCC columns
  starting at 4·t, batches of 20;
* the audio embeddings are zero-padded by `vshift = 15` on both sides and each video window is compared
  (Euclidean, `pairwise_distance` with its 1e-6 eps) with the 31 audio embeddings at offsets −15 … +15;
* `mean_dist[k]` = mean over windows; **LSE-D** = min_k, **LSE-C** = median_k − min_k,
  AV offset = 15 − argmin.

Two entry modes, as in Wav2Lip's `evaluation/scores_LSE`:

* ``lrs``: the video already is a face crop; every frame is resized to 224² (the Wav2Lip/LatentSync copy of
  SyncNetInstance; ``resize=False`` gives the original syncnet_python, which needs 224² input);
* ``wild``: a face is tracked (MediaPipe here instead of S3FD) and cropped as `run_pipeline.py` does: box
  centre, s = max(w, h) / 2 median-filtered over 13 frames, rows cy − s … cy + 1.8 s, columns cx ± 1.4 s,
  outside the frame filled with 110, resized to 224².
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import python_speech_features
import scipy.signal
import torch
import torch.nn.functional as F

from stylelipsync.errors import FaceNotFoundError, MediaError
from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.evaluation.syncnet_v2 import SyncNetV2
from stylelipsync.face.detect import landmark_box
from stylelipsync.face.track import FaceTrack
from stylelipsync.formats import SAMPLE_RATE
from stylelipsync.media import VideoReader, load_audio

VSHIFT = 15
BATCH_SIZE = 20
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
WINDOW = 5
MFCC_PER_FRAME = 4
MFCC_WINDOW = WINDOW * MFCC_PER_FRAME
SIDE = 224
CROP_SCALE = 0.4
PAD_VALUE = 110
BOX_MEDIAN = 13
CONF_MEDIAN = 9

Mode = Literal["lrs", "wild"]


@dataclass(frozen=True)
class LSEScore:
    """Scores of one video: LSE-D, LSE-C, AV offset (frames; positive = audio leads) and the details."""

    lse_d: float
    lse_c: float
    av_offset: int
    mean_dist: np.ndarray
    frame_conf: np.ndarray
    windows: int
    mode: str = ""
    resized: bool = True
    notes: list[str] = field(default_factory=list)


def protocol_wave(wave: np.ndarray) -> np.ndarray:
    """Float audio in [−1, 1] → the int16 sample values syncnet_python feeds to MFCC (as float64)."""
    return np.clip(np.rint(np.asarray(wave, dtype=np.float64) * 32768.0), -32768, 32767)


def mfcc(wave_int16: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(13, N) float32 MFCC at 100 Hz: `python_speech_features.mfcc` with its defaults, transposed."""
    return python_speech_features.mfcc(np.asarray(wave_int16), sample_rate).T.astype(np.float32)


def last_frame(num_frames: int, num_samples: int) -> int:
    """Number of 5-frame windows scored: min(frames, samples // 640) − 5 (the protocol drops the last one)."""
    return max(0, min(num_frames, num_samples // SAMPLES_PER_FRAME) - WINDOW)


def offset_distances(
    video_feat: torch.Tensor, audio_feat: torch.Tensor, vshift: int = VSHIFT
) -> torch.Tensor:
    """(T, 2·vshift + 1) distances of video window t to the zero-padded audio embeddings t ± vshift."""
    win = 2 * vshift + 1
    padded = F.pad(audio_feat, (0, 0, vshift, vshift))
    rows = [
        F.pairwise_distance(video_feat[[t]].repeat(win, 1), padded[t : t + win])
        for t in range(len(video_feat))
    ]
    return torch.stack(rows) if rows else torch.zeros(0, win)


def score_distances(dists: torch.Tensor, vshift: int = VSHIFT) -> LSEScore:
    """LSE-D = min of the per-offset mean distance, LSE-C = median − min, offset = vshift − argmin."""
    if len(dists) == 0:
        raise MediaError(
            f"too short for LSE: the protocol needs more than {WINDOW} frames (0.2 s) of both video and audio"
        )
    mean_dist = dists.mean(dim=0)
    minval, minidx = torch.min(mean_dist, 0)
    median = torch.median(mean_dist)
    frame_conf = (median - dists[:, minidx]).numpy().astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer windows than the kernel: zero-padded, as in the reference
        smoothed = scipy.signal.medfilt(frame_conf, kernel_size=CONF_MEDIAN)
    return LSEScore(
        lse_d=float(minval),
        lse_c=float(median - minval),
        av_offset=int(vshift - int(minidx)),
        mean_dist=mean_dist.numpy().astype(np.float64),
        frame_conf=smoothed,
        windows=len(dists),
    )


def _frames_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """WINDOW BGR uint8 (224, 224, 3) frames → [3, 5, 224, 224] float32 raw pixel values."""
    return torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).float()


@torch.inference_mode()
def embed_windows(
    model: SyncNetV2,
    frames: Iterable[np.ndarray],
    coeffs: np.ndarray,
    windows: int,
    batch_size: int = BATCH_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Video and audio embeddings [windows, 1024] of windows 0 … windows − 1, streaming the frames.

    frames: BGR uint8 224² images at 25 fps (only windows + 4 are read); coeffs: (13, N) MFCC.
    """
    device = next(model.parameters()).device
    mfcc_t = torch.from_numpy(np.ascontiguousarray(coeffs))
    video_out: list[torch.Tensor] = []
    audio_out: list[torch.Tensor] = []
    buffer: list[np.ndarray] = []
    start = 0

    def run(count: int) -> None:
        nonlocal start, buffer
        clips = torch.stack([_frames_tensor(buffer[i : i + WINDOW]) for i in range(count)])
        video_out.append(model.forward_lip(clips.to(device)).cpu())
        blocks = [mfcc_t[:, 4 * v : 4 * v + MFCC_WINDOW] for v in range(start, start + count)]
        audio_out.append(model.forward_aud(torch.stack(blocks)[:, None].to(device)).cpu())
        buffer = buffer[count:]
        start += count

    for frame in itertools.islice(frames, windows + WINDOW - 1):
        buffer.append(frame)
        if len(buffer) == batch_size + WINDOW - 1:
            run(batch_size)
    remaining = min(windows - start, len(buffer) - WINDOW + 1)
    if remaining > 0:
        run(remaining)
    if not video_out:
        return torch.zeros(0, 1024), torch.zeros(0, 1024)
    return torch.cat(video_out), torch.cat(audio_out)


def lrs_frames(video: str | Path, resize: bool = True) -> Iterator[np.ndarray]:
    """Frames of a face-crop video at 25 fps as BGR uint8, resized to 224² (LRS mode)."""
    for frame in VideoReader(video, fps=FPS):
        bgr = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
        if resize:
            bgr = cv2.resize(bgr, (SIDE, SIDE))
        elif bgr.shape[:2] != (SIDE, SIDE):
            raise MediaError(
                f"{video}: frames are {bgr.shape[1]}x{bgr.shape[0]}; without resizing (original "
                "syncnet_python) LRS mode needs 224x224 face crops. Allow the resize or use the wild mode."
            )
        yield bgr


def protocol_boxes(track: FaceTrack) -> np.ndarray:
    """(T, 3) crop half-size s and centre (cx, cy) per frame: landmark box, gaps held, median filter 13."""
    valid = np.flatnonzero(track.valid)
    if len(valid) == 0:
        raise FaceNotFoundError("no face found in the video: the in-the-wild LSE mode needs a face track")
    boxes = np.zeros((len(track), 4))
    for t in valid:
        boxes[t] = landmark_box(track.landmarks[t])
    t = np.arange(len(track))
    after = valid[np.clip(np.searchsorted(valid, t), 0, len(valid) - 1)]
    before = valid[np.clip(np.searchsorted(valid, t) - 1, 0, len(valid) - 1)]
    boxes = boxes[np.where(np.abs(before - t) < np.abs(after - t), before, after)]
    s = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([scipy.signal.medfilt(v, kernel_size=BOX_MEDIAN) for v in (s, cx, cy)], axis=1)


def protocol_crop(
    image: np.ndarray, s: float, cx: float, cy: float, crop_scale: float = CROP_SCALE
) -> np.ndarray:
    """run_pipeline.py's crop of one frame: pad by int(s·(1 + 2·cs)) with 110, cut, resize to 224².

    Equivalent to numpy-padding the whole frame and slicing it, without materialising the padded frame.
    """
    pad = int(s * (1 + 2 * crop_scale))
    my, mx = cy + pad, cx + pad
    top, bottom = int(my - s), int(my + s * (1 + 2 * crop_scale))
    left, right = int(mx - s * (1 + crop_scale)), int(mx + s * (1 + crop_scale))
    h, w = image.shape[:2]
    out = np.full((max(bottom - top, 1), max(right - left, 1), image.shape[2]), PAD_VALUE, dtype=image.dtype)
    # Padded-frame rows [pad, pad + h) hold the image; intersect the cut with them.
    y0, y1 = max(top, pad), min(bottom, pad + h)
    x0, x1 = max(left, pad), min(right, pad + w)
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0 - pad : y1 - pad, x0 - pad : x1 - pad]
    return cv2.resize(out, (SIDE, SIDE))


def wild_frames(video: str | Path, track: FaceTrack) -> Iterator[np.ndarray]:
    """In-the-wild mode frames: 25 fps, protocol crop around the tracked face, BGR uint8 224²."""
    boxes = protocol_boxes(track)
    for frame in VideoReader(video, fps=FPS):
        if frame.index >= len(boxes):
            break
        s, cx, cy = boxes[frame.index]
        yield protocol_crop(cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), s, cx, cy)


def lse_score(
    model: SyncNetV2,
    video: str | Path,
    audio: str | Path | None = None,
    *,
    mode: Mode = "wild",
    resize: bool = True,
    track: FaceTrack | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = BATCH_SIZE,
) -> LSEScore:
    """LSE-D / LSE-C of `video` against `audio` (default: the video's own audio track)."""
    notes: list[str] = []
    reader = VideoReader(video, fps=FPS)
    if abs(reader.info.fps - FPS) > 0.01 and not reader.info.is_image:
        notes.append(f"resampled from {reader.info.fps:.3f} to 25 fps")
    wave = load_audio(audio if audio is not None else video, SAMPLE_RATE)
    samples = protocol_wave(wave)
    windows = last_frame(reader.num_frames, len(samples))
    if abs(len(samples) / SAMPLE_RATE - reader.num_frames / FPS) > 1e-3:
        notes.append(f"audio {len(samples) / SAMPLE_RATE:.3f} s vs video {reader.num_frames / FPS:.3f} s")
    if mode == "lrs":
        frames: Iterable[np.ndarray] = lrs_frames(video, resize)
    elif mode == "wild":
        if track is None:
            track = track_video(video, fps=FPS, cache_dir=cache_dir)
        frames = wild_frames(video, track)
    else:
        raise ValueError(f"mode must be 'lrs' or 'wild', got {mode!r}")
    video_feat, audio_feat = embed_windows(model, frames, mfcc(samples), windows, batch_size)
    result = score_distances(offset_distances(video_feat, audio_feat))
    return LSEScore(
        result.lse_d,
        result.lse_c,
        result.av_offset,
        result.mean_dist,
        result.frame_conf,
        result.windows,
        mode=mode,
        resized=resize or mode == "wild",
        notes=notes,
    )
