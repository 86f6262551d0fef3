"""Formant, voicing, intensity and harmonicity tracks of speech on the 10 ms mel grid (Praat via parselmouth).

Why: the first formant follows jaw opening / vowel height and the second lip rounding / tongue front-back,
across languages; a linear map of log-mel only approximates them (and the mel-based proxies of
`spectral_shape` are crude), so the mouth-shape model can read them directly. Frame i is the time of mel frame
i (i · 10 ms, the centre of the STFT window). Praat's Burg formant tracker (5 formants below
`ceiling_hz`, 25 ms window), autocorrelation pitch (75–600 Hz), intensity and cross-correlation harmonicity
are sampled at the nearest Praat frame. Undefined values (no formant found, unvoiced or silent frames) are
filled with the clip's mean over defined frames, and indicator columns say where the tracks are defined, so
that after per-clip normalisation an undefined value reads as "average".
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stylelipsync.audio.mel import MEL_FRAMES_PER_SECOND, SAMPLE_RATE
from stylelipsync.errors import StyleLipSyncError

F64 = NDArray[np.float64]
FORMANT_COLUMNS = (
    "f1_khz",
    "f2_khz",
    "f3_khz",
    "log_b1",
    "log_b2",
    "formant_defined",
    "voiced",
    "log_f0",
    "intensity_db",
    "hnr_db",
    "f1_voiced_khz",
    "f2_voiced_khz",
)
"""Columns of `formant_tracks`: Burg F1–F3 (kHz), log10 bandwidths B1, B2 (Hz), 1 where F1 and F2 are defined,
1 where pitch is voiced, log F0 (filled), intensity (dB), harmonicity (dB, filled), and F1, F2 only where
voiced (filled elsewhere): vowel formants without the noise of consonant and silence frames."""
N_FORMANT = len(FORMANT_COLUMNS)
DEFAULT_CEILING_HZ = 5500.0
SILENT_DB = 20.0
"""Frames quieter than this (Praat dB re 2e-5, of the float wave in [-1, 1]) count as undefined."""
CHUNK_S, MARGIN_S = 10.0, 0.5
"""Formants and harmonicity are analysed in pieces of CHUNK_S seconds with MARGIN_S of context each side."""


def _parselmouth() -> ModuleType:
    """The parselmouth module, or an error that says how to install it."""
    try:
        import parselmouth
    except ImportError as exc:
        raise StyleLipSyncError(
            "formant features need praat-parselmouth (pip install praat-parselmouth==0.4.7); "
            "or use a mouth-shape model without formants"
        ) from exc
    return parselmouth


def _nearest(values: F64, x1: float, dx: float, times: F64) -> tuple[F64, NDArray[np.bool_]]:
    """values at the nearest analysis frame of each time, and whether the time lies inside the analysis."""
    pos = np.rint((times - x1) / dx).astype(np.int64)
    inside = (pos >= 0) & (pos < len(values))
    out = np.full(len(times), np.nan)
    out[inside] = values[pos[inside]]
    return out, inside


def _filled(x: F64, defined: NDArray[np.bool_], default: float) -> F64:
    """x with the undefined entries replaced by the mean of the defined ones (`default` if none is)."""
    fill = float(np.mean(x[defined])) if defined.any() else default
    return np.where(defined, x, fill)


def _formants_at(sound: Any, times: F64, ceiling_hz: float) -> F64:
    """(len(times), 5) Burg F1–F3 and B1–B2 (Hz, NaN where undefined) of a Praat Sound at `times`."""
    step = 1.0 / MEL_FRAMES_PER_SECOND
    formant = sound.to_formant_burg(
        time_step=step, max_number_of_formants=5.0, maximum_formant=ceiling_hz, window_length=0.025
    )
    n = formant.n_frames
    ftimes = np.array([formant.get_time_from_frame_number(i + 1) for i in range(n)])
    tracks = np.full((n, 5), np.nan)
    for i, t in enumerate(ftimes):
        for k in range(3):
            tracks[i, k] = formant.get_value_at_time(k + 1, t)
        for k in range(2):
            tracks[i, 3 + k] = formant.get_bandwidth_at_time(k + 1, t)
    x1 = float(ftimes[0]) if n else 0.0
    return np.stack([_nearest(tracks[:, k], x1, step, times)[0] for k in range(5)], axis=1)


def _harmonicity_at(sound: Any, times: F64) -> F64:
    """(len(times), 1) cross-correlation harmonicity (dB; -200 or NaN where undefined) at `times`."""
    harm = sound.to_harmonicity_cc(time_step=1.0 / MEL_FRAMES_PER_SECOND, minimum_pitch=75.0)
    return _nearest(np.asarray(harm.values[0], dtype=np.float64), harm.x1, harm.dx, times)[0][:, None]


def _chunked(pm: ModuleType, x: F64, sample_rate: int, times: F64, analyse: Callable[[Any, F64], F64]) -> F64:
    """`analyse(sound, times)` run on CHUNK_S pieces of the wave (each with MARGIN_S of context on both sides)
    and joined: Praat's formant analysis peaks about 0.5 MB per second of audio, so a long file is analysed
    piecewise to keep memory flat. Each piece centres Praat's 10 ms frame grid on itself, so a value can come
    from a frame up to 5 ms away from the one a whole-file analysis would use (as within one piece)."""
    span, margin = int(CHUNK_S * sample_rate), int(MARGIN_S * sample_rate)
    parts = []
    for start in range(0, len(x), span):
        last = start + span >= len(x)
        sel = (times >= start / sample_rate) & ((times < (start + span) / sample_rate) | last)
        lo, hi = max(0, start - margin), min(len(x), start + span + margin)
        sound = pm.Sound(x[lo:hi], sampling_frequency=float(sample_rate), start_time=lo / sample_rate)
        parts.append((sel, analyse(sound, times[sel])))
    out = np.full((len(times), parts[0][1].shape[1]), np.nan)
    for sel, values in parts:
        out[sel] = values
    return out


def formant_tracks(
    wave: np.ndarray, num_frames: int, sample_rate: int = SAMPLE_RATE, ceiling_hz: float = DEFAULT_CEILING_HZ
) -> F64:
    """(num_frames, N_FORMANT) tracks at mel-frame times i / 100 s; columns `FORMANT_COLUMNS`."""
    pm = _parselmouth()
    x = np.asarray(wave, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"formant_tracks needs a mono wave, got shape {x.shape}")
    times = np.arange(num_frames, dtype=np.float64) / MEL_FRAMES_PER_SECOND
    out = np.zeros((num_frames, N_FORMANT))
    if len(x) < int(0.06 * sample_rate) or not np.any(x):
        out[:, 0:3] = (0.5, 1.5, 2.5)
        out[:, 3:5] = 2.0
        out[:, 8] = SILENT_DB
        out[:, 10:12] = (0.5, 1.5)
        return out
    sound = pm.Sound(x, sampling_frequency=float(sample_rate))
    step = 1.0 / MEL_FRAMES_PER_SECOND

    intensity = sound.to_intensity(minimum_pitch=100.0, time_step=step)
    db, _ = _nearest(np.asarray(intensity.values[0], dtype=np.float64), intensity.x1, intensity.dx, times)
    loud = np.isfinite(db) & (db > SILENT_DB)
    db = np.where(np.isfinite(db), np.maximum(db, SILENT_DB), SILENT_DB)

    sampled = _chunked(pm, x, sample_rate, times, lambda snd, t: _formants_at(snd, t, ceiling_hz))
    defined = np.isfinite(sampled[:, 0]) & np.isfinite(sampled[:, 1]) & loud

    pitch = sound.to_pitch(time_step=step, pitch_floor=75.0, pitch_ceiling=600.0)
    f0_values = np.asarray(pitch.selected_array["frequency"], dtype=np.float64)
    f0, _ = _nearest(f0_values, pitch.x1, pitch.dx, times)
    voiced = np.isfinite(f0) & (f0 > 0) & defined
    log_f0 = _filled(np.log10(np.where(voiced, f0, 1.0)), voiced, np.log10(150.0))

    hnr = _chunked(pm, x, sample_rate, times, _harmonicity_at)[:, 0]
    hnr_ok = np.isfinite(hnr) & (hnr > -100) & loud
    hnr = _filled(np.where(hnr_ok, hnr, 0.0), hnr_ok, 0.0)

    defaults = (500.0, 1500.0, 2500.0, 100.0, 100.0)
    for k in range(5):
        col_ok = defined & np.isfinite(sampled[:, k]) & (sampled[:, k] > 0)
        value = _filled(np.where(col_ok, sampled[:, k], 1.0), col_ok, defaults[k])
        out[:, k] = value / 1000.0 if k < 3 else np.log10(value)
    out[:, 5] = defined
    out[:, 6] = voiced
    out[:, 7] = log_f0
    out[:, 8] = db
    out[:, 9] = hnr
    for j, k in enumerate((0, 1)):
        raw = np.where(voiced, sampled[:, k], 1.0)
        out[:, 10 + j] = _filled(raw, voiced, defaults[k]) / 1000.0
    return out


__all__ = ["DEFAULT_CEILING_HZ", "FORMANT_COLUMNS", "N_FORMANT", "formant_tracks"]
