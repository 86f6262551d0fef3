"""Google's speech_embedding (96-d per ~0.78 s of speech) at video frame times, from the ONNX files that
openwakeword 0.5.1 ships inside its wheel.

Why: the mouth-shape ridge's hand-made features (log-mel, spectral summaries, formants) are learnt from a few
dozen voices; speech_embedding was trained for keyword spotting on a very large multi-speaker corpus, so its
features carry over to new voices better (the shipped mouth-shape model uses them: MODEL_CARD.md). No
download: the two models come with the PyPI package (openwakeword==0.5.1, a dependency; 0.6 no longer bundles
them), located with `importlib.resources`.

Preprocessing, as openwakeword's `AudioFeatures` feeds the models: 16 kHz audio in int16 units (float32,
±32767) → `melspectrogram.onnx`, 32 mel bins per 10 ms hop from 512-sample frames without padding (frame i
takes samples 160·i … 160·i + 511 and weighs only 160·i + 56 … 160·i + 455, a 400-sample window; measured),
rescaled as x / 10 + 2 → windows of 76 consecutive mel frames → `embedding_model.onnx` → 96 numbers. The mel
model floors its dB output 80 dB below the maximum of its input (measured), so mel computed in pieces is
floored at the whole clip's maximum, as one call on the clip would be. A window reads 75 · 160 + 400 = 12400
samples (775 ms); the window of time τ is the one whose centre is nearest τ on the 10 ms grid, so it reads
audio within `REACH_S` (392.5 ms) of τ (and the clip's loudest frame, through that floor). Mel frames outside
the audio are padded with the clip's quiet level (the 5th percentile of each mel bin), i.e. read as the
recording's background.

Memory for long audio is a small multiple of the wave's (measured: 8 min at 25 fps, ±2 windows, peaked
150 MB above the loaded models): the mel (32 numbers per 10 ms) is computed in pieces of
`MEL_CHUNK_FRAMES` frames, the embedding model runs on batches of `batch` windows, and windows shared by
several frames are computed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stylelipsync.audio.mel import mono, resample_16k
from stylelipsync.errors import StyleLipSyncError
from stylelipsync.formats import SAMPLE_RATE

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
HOP = 160
MEL_WINDOW = 512
MEL_BINS = 32
WINDOW_FRAMES = 76
EMBEDDING_SIZE = 96
WINDOW_SAMPLES = (WINDOW_FRAMES - 1) * HOP + MEL_WINDOW
"""Samples a window's 76 mel frames take (12512); their weighted span is 112 shorter, centred alike."""
HALF_WINDOW_S = ((WINDOW_FRAMES - 1) * HOP + 400) / 2 / SAMPLE_RATE
"""Audio a window reads on each side of its centre (387.5 ms)."""
REACH_S = HALF_WINDOW_S + HOP / 2 / SAMPLE_RATE
"""Audio the window of time τ reads on each side of τ, its centre being on the 10 ms grid (392.5 ms)."""
MEL_CHUNK_FRAMES = 1000
"""Mel frames (10 s) computed per call of the mel model."""
FLOOR_BELOW_MAX = 8.0
"""The mel model's floor, 80 dB below the maximum of its input, in rescaled units."""
PAD_PERCENTILE = 5.0
PACKAGE_FIX = (
    "pip install openwakeword==0.5.1 onnxruntime==1.32.0 (dependencies of stylelipsync: "
    "pip install -e . in the checkout); or use a mouth-shape model without speech embeddings"
)


@dataclass(frozen=True)
class _Sessions:
    mel: Any
    embedding: Any


def _model_file(name: str) -> Path:
    """Path of one of openwakeword's bundled ONNX files, or an error saying how to get them.

    The package is located, not imported: importing it loads scikit-learn and SciPy (about 1 s) for nothing.
    """
    spec = find_spec("openwakeword")
    if spec is None or not spec.submodule_search_locations:
        raise StyleLipSyncError(
            f"speech-embedding features need openwakeword's bundled models: {PACKAGE_FIX}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "models" / name
    if not path.is_file():
        try:
            found = version("openwakeword")
        except PackageNotFoundError:
            found = "?"
        raise StyleLipSyncError(
            f"{path} is missing (openwakeword {found} does not bundle it; 0.5.1 does): {PACKAGE_FIX}"
        )
    return path


@lru_cache(maxsize=2)
def _sessions(threads: int) -> _Sessions:
    """The two ONNX sessions on the CPU with `threads` threads (loaded once per thread count)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise StyleLipSyncError(f"speech-embedding features need onnxruntime: {PACKAGE_FIX}") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    return _Sessions(
        ort.InferenceSession(str(_model_file("melspectrogram.onnx")), options, providers=providers),
        ort.InferenceSession(str(_model_file("embedding_model.onnx")), options, providers=providers),
    )


def _pcm16k(wave: np.ndarray, sample_rate: int) -> F32:
    """Mono 16 kHz float32 in int16 units (what the mel model was exported for)."""
    x = np.asarray(wave)
    if x.ndim == 2:
        x = mono(x)
    if x.ndim != 1:
        raise ValueError(f"speech embeddings need a mono or (channels, samples) wave, got shape {x.shape}")
    if sample_rate != SAMPLE_RATE:
        x = resample_16k(x.astype(np.float64), sample_rate)
    if x.dtype == np.float32:
        # A float32 product is the float64 one rounded once: the same numbers without a float64 copy.
        return np.clip(x, -1.0, 1.0) * np.float32(32767.0)
    return (np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0) * 32767.0).astype(np.float32)


def embedding_mel(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, threads: int = 1) -> F32:
    """(N, 32) rescaled mel frames of the embedding model, N = (samples − 512) // 160 + 1 at 16 kHz (0 for
    shorter audio), computed `MEL_CHUNK_FRAMES` at a time and floored as one call on the whole clip."""
    x = _pcm16k(wave, sample_rate)
    count = max(0, (len(x) - MEL_WINDOW) // HOP + 1)
    out = np.empty((count, MEL_BINS), dtype=np.float32)
    session = _sessions(threads).mel
    for first in range(0, count, MEL_CHUNK_FRAMES):
        n = min(MEL_CHUNK_FRAMES, count - first)
        piece = x[first * HOP : (first + n - 1) * HOP + MEL_WINDOW]
        mel = session.run(None, {"input": piece[None]})[0].reshape(-1, MEL_BINS)
        out[first : first + n] = mel[:n] / 10.0 + 2.0
    if count > MEL_CHUNK_FRAMES:
        np.maximum(out, out.max() - FLOOR_BELOW_MAX, out=out)
    return out


def speech_embeddings(
    wave: np.ndarray,
    sample_rate: int,
    times: np.ndarray,
    batch: int = 32,
    threads: int = 1,
) -> F32:
    """(len(times), 96) embedding of the window centred (to 10 ms) on each time in seconds; windows reaching
    outside the audio read the clip's quiet level there. Equal windows are computed once, `batch` at a time
    (the model's activations take ~1.8 MB per window: 256 at a time peaked 450 MB above the rest, 32 at a
    time ~50 MB, at the same speed)."""
    times = np.asarray(times, dtype=np.float64).ravel()
    if len(times) == 0:
        return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
    mel = embedding_mel(wave, sample_rate, threads)
    quiet = (
        np.percentile(mel, PAD_PERCENTILE, axis=0).astype(np.float32)
        if len(mel)
        else embedding_mel(np.zeros(MEL_WINDOW), SAMPLE_RATE, threads)[0]
    )
    # The window starting at mel frame j is centred on sample 160·j + WINDOW_SAMPLES / 2.
    starts = np.rint((times * SAMPLE_RATE - WINDOW_SAMPLES / 2) / HOP).astype(np.int64)
    unique, inverse = np.unique(starts, return_inverse=True)
    lo, hi = int(unique[0]), int(unique[-1]) + WINDOW_FRAMES
    padded = np.tile(quiet, (hi - lo, 1))
    inside_lo, inside_hi = max(lo, 0), min(hi, len(mel))
    if inside_lo < inside_hi:
        padded[inside_lo - lo : inside_hi - lo] = mel[inside_lo:inside_hi]
    session = _sessions(threads).embedding
    out = np.empty((len(unique), EMBEDDING_SIZE), dtype=np.float32)
    offsets = np.arange(WINDOW_FRAMES)
    for first in range(0, len(unique), batch):
        rows = unique[first : first + batch] - lo
        windows = padded[rows[:, None] + offsets[None, :]][..., None]
        out[first : first + len(rows)] = session.run(None, {"input_1": windows})[0].reshape(
            -1, EMBEDDING_SIZE
        )
    return out[inverse.ravel()]


def frame_embeddings(
    wave: np.ndarray,
    sample_rate: int,
    num_frames: int,
    fps: float,
    offset_s: float = 0.0,
    context: int = 0,
    step_s: float = 0.04,
    threads: int = 1,
) -> F32:
    """(num_frames, 2·context + 1, 96) embeddings of video frame t (time t / fps): windows centred on
    t / fps + offset_s + k · step_s for k = −context … context (a window ends HALF_WINDOW_S after its
    centre: offset_s = −0.2375 makes it end 150 ms after the frame)."""
    k = np.arange(-context, context + 1)
    times = np.arange(num_frames)[:, None] / fps + offset_s + k[None, :] * step_s
    flat = speech_embeddings(wave, sample_rate, times.ravel(), threads=threads)
    return flat.reshape(num_frames, len(k), EMBEDDING_SIZE)


def clip_statistics(frames: np.ndarray, size: int) -> tuple[F64, F64]:
    """Mean and std (a std of 1 where a number is constant) of each of the 96 numbers over all windows of
    `frame_embeddings` output (T, W, 96) with W · 96 = size: the per-clip normalisation of the
    mouth-shape features."""
    e = np.asarray(frames)
    if e.ndim != 3 or e.shape[2] != EMBEDDING_SIZE or e.shape[1] * EMBEDDING_SIZE != size:
        raise ValueError(f"embeddings of shape {e.shape}, expected (frames, {size // EMBEDDING_SIZE}, 96)")
    flat = e.reshape(-1, EMBEDDING_SIZE).astype(np.float64)
    if not len(flat):
        return np.zeros(EMBEDDING_SIZE), np.ones(EMBEDDING_SIZE)
    std = flat.std(axis=0)
    return flat.mean(axis=0), np.where(std > 1e-9, std, 1.0)


__all__ = [
    "EMBEDDING_SIZE",
    "HALF_WINDOW_S",
    "REACH_S",
    "WINDOW_SAMPLES",
    "clip_statistics",
    "embedding_mel",
    "frame_embeddings",
    "speech_embeddings",
]
