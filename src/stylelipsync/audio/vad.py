"""Energy-based voice activity per video frame, the loudness envelope it is built on, and the silence gate
(`speech_gate`) both engines close the mouth with."""

from __future__ import annotations

import numpy as np

from stylelipsync.formats import SAMPLE_RATE

ENERGY_FLOOR_DB = -100.0
# Below this loudness (dBFS, 95th percentile over frames) a clip counts as silent throughout.
ABSOLUTE_FLOOR_DB = -60.0
GATE_RAMP_FRAMES = 3
"""Frames over which the silence gate (`speech_gate`) fades on each side of a change."""


def _mono(wave: np.ndarray) -> np.ndarray:
    x = np.asarray(wave, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0 if x.shape[0] <= x.shape[1] else 1)
    if x.ndim != 1:
        raise ValueError(f"wave must be 1-D or 2-D, got shape {x.shape}")
    return x


def frame_energy(wave: np.ndarray, sample_rate: int, num_frames: int, fps: float) -> np.ndarray:
    """(T,) float32 RMS level in dBFS of the audio around each video frame (floor −100 dB).

    Frame t covers one frame period centred on its time t / fps, the same centring as the mel windows.
    Audio beyond the clip counts as silence. This is the envelope to correlate with mouth opening.
    """
    x = _mono(wave)
    if num_frames <= 0:
        return np.zeros(0, dtype=np.float32)
    period = sample_rate / fps
    centres = np.arange(num_frames) * period
    lo = np.clip(np.floor(centres - period / 2).astype(np.int64), 0, len(x))
    hi = np.clip(np.floor(centres + period / 2).astype(np.int64), 0, len(x))
    cumulative = np.concatenate([[0.0], np.cumsum(x * x)])
    width = np.maximum(np.floor(period), 1.0)
    mean_square = np.maximum(cumulative[hi] - cumulative[lo], 0.0) / width
    floor = 10.0 ** (ENERGY_FLOOR_DB / 10.0)
    return (10.0 * np.log10(np.maximum(mean_square, floor))).astype(np.float32)


def _runs(mask: np.ndarray) -> list[tuple[int, int, bool]]:
    """(start, end, value) of the constant runs of a boolean array."""
    if mask.size == 0:
        return []
    edges = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [mask.size]])
    return [(int(s), int(e), bool(mask[s])) for s, e in zip(starts, ends, strict=True)]


def _switch_levels(loud: float, noise: float, on_db: float, hysteresis_db: float) -> tuple[float, float]:
    """(on, off) levels in dBFS: speech switches on above `on` and off below `off`.

    On: within `on_db` of the loud level and 6 dB above the noise floor (capped at 3 dB under the loud level,
    so a clip without pauses still counts as voiced). Off: `hysteresis_db` lower, but 3 dB above the noise
    floor, so background sound as loud as the pauses does not hold speech on.
    """
    on = max(loud - on_db, min(noise + 6.0, loud - 3.0), ABSOLUTE_FLOOR_DB)
    off = min(max(on - hysteresis_db, noise + 3.0, ABSOLUTE_FLOOR_DB), on)
    return on, off


def voice_activity(
    wave: np.ndarray,
    sample_rate: int,
    num_frames: int,
    fps: float,
    *,
    min_silence: float = 0.2,
    min_speech: float = 0.06,
    on_db: float = 30.0,
    hysteresis_db: float = 8.0,
) -> np.ndarray:
    """(T,) bool: True where someone is speaking in the audio of video frame t.

    A frame switches on when its level is within `on_db` of the clip's loud level (95th percentile) and
    6 dB above the noise floor (10th percentile; capped at 3 dB under the loud level so a clip without
    pauses still counts as voiced), and stays on until it drops `hysteresis_db` lower, or to 3 dB above the
    noise floor (`_switch_levels`).
    Pauses shorter than `min_silence` (gaps between words) are filled, then voiced bursts shorter than
    `min_speech` (clicks) are removed. Clips quieter than −60 dBFS, including digital silence, are all False.
    """
    energy = frame_energy(wave, sample_rate, num_frames, fps).astype(np.float64)
    voiced = np.zeros(num_frames, dtype=bool)
    if num_frames == 0:
        return voiced
    loud = float(np.percentile(energy, 95))
    if loud < ABSOLUTE_FLOOR_DB:
        return voiced
    on, off = _switch_levels(loud, float(np.percentile(energy, 10)), on_db, hysteresis_db)
    state = False
    for t, level in enumerate(energy):
        state = level > on or (state and level > off)
        voiced[t] = state
    gap = round(min_silence * fps)
    for start, end, value in _runs(voiced):
        if not value and start > 0 and end < num_frames and end - start < gap:
            voiced[start:end] = True
    burst = round(min_speech * fps)
    for start, end, value in _runs(voiced):
        if value and end - start < burst:
            voiced[start:end] = False
    return voiced


def speech_gate(
    wave: np.ndarray,
    num_frames: int,
    audio_frames: int,
    fps: float,
    keep_silence: bool,
    min_silence: float = 0.2,
) -> np.ndarray:
    """(num_frames,) float64 weight of the audio styles: 1 on speech, ramping to 0 on silences of at least
    `min_silence` seconds and past the audio's end (frame `audio_frames` on)."""
    inside = np.arange(num_frames) < audio_frames
    if keep_silence:
        voiced = inside
    else:
        activity = voice_activity(wave, SAMPLE_RATE, num_frames, fps, min_silence=min_silence)
        voiced = np.asarray(activity, dtype=bool) & inside
    width = 2 * GATE_RAMP_FRAMES + 1
    padded = np.pad(voiced.astype(np.float64), GATE_RAMP_FRAMES, mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


class StreamingVoiceActivity:
    """`voice_activity` for audio that arrives in chunks: one decision per video frame, from the past only.

    The loud level and noise floor are percentiles of the frames heard so far (the last `history_s`);
    a pause shorter than `min_silence` cannot be told from the end of speech without waiting, so speech is
    held on for `min_silence` after the level drops instead (the mouth is then closed by the audio
    prediction itself). Frame t (centred on t / fps) is decided once audio to t / fps + half a frame is in.
    """

    def __init__(
        self,
        fps: float,
        sample_rate: int = SAMPLE_RATE,
        *,
        history_s: float = 30.0,
        min_silence: float = 0.2,
        on_db: float = 30.0,
        hysteresis_db: float = 8.0,
    ) -> None:
        self.fps, self.sample_rate = float(fps), int(sample_rate)
        self.on_db, self.hysteresis_db = on_db, hysteresis_db
        self._history: list[float] = []
        self._history_len = max(int(history_s * fps), 1)
        self._hold = round(min_silence * fps)
        self._held = 0
        self._state = False
        self._audio = np.zeros(0, dtype=np.float64)
        self._audio_start = 0
        self.frames = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add mono samples; (k,) bool decisions of the frames they complete."""
        self._audio = np.concatenate([self._audio, _mono(chunk)])
        period = self.sample_rate / self.fps
        out: list[bool] = []
        while True:
            centre = self.frames * period
            lo, hi = int(np.floor(centre - period / 2)), int(np.floor(centre + period / 2))
            if hi > self._audio_start + len(self._audio):
                break
            seg = self._audio[max(lo, 0) - self._audio_start : hi - self._audio_start]
            mean_square = float(np.sum(seg * seg)) / max(np.floor(period), 1.0)
            level = 10.0 * np.log10(max(mean_square, 10.0 ** (ENERGY_FLOOR_DB / 10.0)))
            out.append(self._decide(level))
            self.frames += 1
        drop = int(np.floor(self.frames * period - period / 2)) - self._audio_start
        if drop > 0:
            self._audio = self._audio[drop:]
            self._audio_start += drop
        return np.asarray(out, dtype=bool)

    def _decide(self, level: float) -> bool:
        history = self._history
        history.append(level)
        if len(history) > self._history_len:
            del history[0]
        loud = float(np.percentile(history, 95))
        if loud < ABSOLUTE_FLOOR_DB:
            self._state, self._held = False, 0
            return False
        on, off = _switch_levels(loud, float(np.percentile(history, 10)), self.on_db, self.hysteresis_db)
        self._state = level > on or (self._state and level > off)
        if self._state:
            self._held = self._hold
            return True
        if self._held > 0:
            self._held -= 1
            return True
        return False
