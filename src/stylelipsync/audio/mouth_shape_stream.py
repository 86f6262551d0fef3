"""The streaming (look-ahead) mouth-shape model run on audio as it arrives: `live` dubbing.

`MouthShapeStream` takes 16 kHz chunks of any size and returns the prediction of every video frame whose
audio context is complete, the same numbers `MouthShapeModel.predict` gives on the whole clip (up to float
rounding), except the last frames of a finished stream, whose missing future is read as silence. Only a
window of the recent audio and features is kept, so memory is flat however long the stream runs.

Mel frame i is centred on sample 160·i and reads 256 samples on each side, so it is final once 160·i + 256
samples have arrived; the first two frames are computed with the whole-clip reflect padding. Features are
normalised by the running statistics of the frames so far (the causal model's `normalization="running"`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from stylelipsync.audio.mel import (
    HOP_LENGTH,
    LOG_FLOOR,
    MEL_FRAMES_PER_SECOND,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    log_mel_spectrogram_numpy,
    mel_filterbank_numpy,
    stft_window,
)
from stylelipsync.audio.mouth_features import N_SPECTRAL, N_SPECTRAL_BANDS, STD_FLOOR, frame_features
from stylelipsync.audio.mouth_shape_model import MouthShapeModel

F64 = NDArray[np.float64]
HALF = N_FFT // 2
REFLECTED_FRAMES = 2
"""Mel frames whose window reaches before sample 0 (centres 0 and 160): computed with reflect padding."""


def uncentred_log_mel(x: NDArray[np.float32]) -> F64:
    """(K, 80) log10 mel of the frames centred on samples 256 + 160·k of `x` (no padding); numpy, because a
    few frames at a time are all a stream computes and torch's per-call overhead would dominate."""
    window, filters = stft_window(), mel_filterbank_numpy()
    count = (len(x) - N_FFT) // HOP_LENGTH + 1
    if count <= 0:
        return np.zeros((0, N_MELS))
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(x, dtype=np.float64), N_FFT)[::HOP_LENGTH]
    power = np.abs(np.fft.rfft(frames[:count] * window, axis=1)) ** 2
    mel = power @ filters.T
    return np.log10(np.maximum(mel, LOG_FLOOR)).astype(np.float32).astype(np.float64)


class MouthShapeStream:
    """Incremental `MouthShapeModel.predict` for a running-normalisation model (see the module docstring)."""

    def __init__(self, model: MouthShapeModel, fps: float) -> None:
        spec = model.spec
        if spec.normalization != "running" or spec.phones != "none":
            raise ValueError(
                "streaming needs the look-ahead mouth-shape model (running normalisation, no phone "
                "features): MouthShapeModel.default(causal=True)"
            )
        self.model, self.fps, self.spec = model, float(fps), spec
        # Build the filters now (their first call takes a moment): the first chunk must not wait for them.
        mel_filterbank_numpy()
        frame_features(np.zeros((1, N_MELS)))
        used = [np.arange(N_MELS)]
        if spec.spectral:
            used.append(np.arange(N_MELS, N_MELS + N_SPECTRAL))
        if spec.spectral_bands:
            used.append(np.arange(N_MELS + N_SPECTRAL, N_MELS + N_SPECTRAL + N_SPECTRAL_BANDS))
        self._used = np.concatenate(used)
        k = float(spec.prior_frames)
        pm, ps = model.prior_mean[self._used], model.prior_std[self._used]
        self._count = k
        self._sum = k * pm
        self._sq = k * (ps**2 + pm**2)
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0
        """Absolute index of `_audio[0]`."""
        self._received = 0
        self._mel_done = 0
        """Mel frames computed and normalised so far."""
        keep = spec.past + spec.future + 1
        self._rows: list[F64] = []
        self._rows_start = 0
        """Absolute mel index of `_rows[0]`; only the last `keep` + a few rows are kept."""
        self._keep_rows = keep + 4
        self._frames_done = 0
        smooth = model.smooth_future_frames
        self._raw: list[F64] = []
        """Unsmoothed predictions of the frames the FIR smoothing still needs."""
        self._raw_start = 0
        self._smooth_past = model.smooth_centre
        self._smooth_future = smooth
        self._next_out = 0

    @property
    def lookahead(self) -> float:
        """Seconds of audio after a frame's time needed before its prediction is out."""
        return self.model.lookahead(self.fps)

    @property
    def frames_out(self) -> int:
        """Predictions returned so far."""
        return self._next_out

    def push(self, chunk: NDArray[np.floating]) -> F64:
        """Add 16 kHz mono samples; returns (k, 6) predictions of the frames completed by them (k ≥ 0)."""
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self._audio = np.concatenate([self._audio, x])
        self._received += len(x)
        self._compute_mel(final=False)
        return self._predict_ready(final=False)

    def finish(self) -> F64:
        """End of the stream: the frames still waiting, their missing future read as silence."""
        pad = HALF + HOP_LENGTH * (self.spec.future + 2) + int(self._smooth_future * SAMPLE_RATE / self.fps)
        out = [self.push(np.zeros(pad, dtype=np.float32))]
        out.append(self._predict_ready(final=True))
        return np.concatenate(out) if out else np.zeros((0, len(self.model.names)))

    def _compute_mel(self, final: bool) -> None:
        """Compute, normalise and keep every mel frame whose window has fully arrived."""
        ready = (self._received - HALF) // HOP_LENGTH + 1 if self._received >= HALF else 0
        if self._mel_done < REFLECTED_FRAMES and self._received > HALF + HOP_LENGTH:
            first = log_mel_spectrogram_numpy(self._audio[: self._received - self._audio_start], SAMPLE_RATE)
            mel = np.asarray(first[self._mel_done : REFLECTED_FRAMES], dtype=np.float64)
            self._add_rows(mel)
        if ready > self._mel_done >= REFLECTED_FRAMES:
            lo = self._mel_done * HOP_LENGTH - HALF - self._audio_start
            hi = (ready - 1) * HOP_LENGTH + HALF - self._audio_start
            self._add_rows(uncentred_log_mel(self._audio[lo:hi]))
        # Keep only the audio the next frames' windows read.
        drop = self._mel_done * HOP_LENGTH - HALF - self._audio_start
        if self._mel_done >= REFLECTED_FRAMES and drop > 0:
            self._audio = self._audio[drop:]
            self._audio_start += drop

    def _add_rows(self, mel: F64) -> None:
        """Normalise new mel frames by the running statistics and keep their pooled features."""
        spec = self.spec
        feats = frame_features(mel)[:, self._used]
        count = self._count + np.arange(1, len(feats) + 1, dtype=np.float64)[:, None]
        csum = self._sum + np.cumsum(feats, axis=0)
        csq = self._sq + np.cumsum(feats**2, axis=0)
        mean = csum / count
        std = np.sqrt(np.maximum(csq / count - mean**2, 0.0))
        norm = (feats - mean) / np.maximum(std, STD_FLOOR)
        self._count, self._sum, self._sq = float(count[-1, 0]), csum[-1], csq[-1]
        pooled = norm[:, :N_MELS].reshape(len(norm), spec.bands, spec.band_pool).mean(axis=2)
        rows = np.concatenate([pooled, norm[:, N_MELS:]], axis=1)
        self._rows.extend(rows)
        self._mel_done += len(rows)

    def _row_window(self, centre: int) -> F64:
        """(past + future + 1, dims) rows around mel frame `centre` (zeros before the start)."""
        spec = self.spec
        lo, hi = centre - spec.past, centre + spec.future + 1
        dims = len(self._rows[0])
        out = np.zeros((hi - lo, dims))
        a = max(lo, self._rows_start)
        out[a - lo :] = np.stack(self._rows[a - self._rows_start : hi - self._rows_start])
        return out

    def _features(self, window: F64) -> F64:
        """One frame's feature vector from its row window, laid out as `ClipFeatures.rows` does."""
        spec = self.spec
        bands = spec.bands
        steps = window.reshape(spec.steps, spec.stride, -1).mean(axis=1)
        mel = steps[:, :bands]
        if spec.deltas:
            mel = np.concatenate([mel, np.diff(mel, axis=0)], axis=0)
        parts = [mel.reshape(-1)]
        if spec.spectral_size:
            parts.append(steps[:, bands:].reshape(-1))
        return np.concatenate(parts)

    def _predict_ready(self, final: bool) -> F64:
        spec, model = self.spec, self.model
        new: list[F64] = []
        while True:
            t = self._frames_done
            centre = int(np.rint(t * MEL_FRAMES_PER_SECOND / self.fps))
            if centre + spec.future >= self._mel_done:
                break
            self._raw.append(self._features(self._row_window(centre)) @ model.weight + model.bias)
            self._frames_done += 1
            new.extend(self._smoothed(final=False))
        if final:
            new.extend(self._smoothed(final=True))
        self._trim()
        return np.stack(new) if new else np.zeros((0, len(model.names)))

    def _smoothed(self, final: bool) -> list[F64]:
        """Smoothed predictions that became computable (edges repeat, as `smooth_frames` does)."""
        taps, before, after = self.model.smooth, self._smooth_past, self._smooth_future
        out: list[F64] = []
        while True:
            t = self._next_out
            last = self._raw_start + len(self._raw) - 1
            if t > last or (t + after > last and not final):
                return out
            acc = np.zeros_like(self._raw[0])
            for k, w in enumerate(taps):
                i = min(max(t + k - before, 0), last) - self._raw_start
                acc += w * self._raw[max(i, 0)]
            out.append(acc)
            self._next_out += 1

    def _trim(self) -> None:
        """Forget rows and raw predictions no future frame reads."""
        spec = self.spec
        next_centre = int(np.rint(self._frames_done * MEL_FRAMES_PER_SECOND / self.fps))
        drop = min(next_centre - spec.past, len(self._rows) + self._rows_start - self._keep_rows)
        drop -= self._rows_start
        if drop > 0:
            del self._rows[:drop]
            self._rows_start += drop
        drop = self._next_out - self._smooth_past - self._raw_start
        if drop > 0:
            del self._raw[:drop]
            self._raw_start += drop


__all__ = ["MouthShapeStream", "uncentred_log_mel"]
