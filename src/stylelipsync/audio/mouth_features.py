"""The audio features of the speech → mouth-shape model (`audio.mouth_shape_model`): what the audio around a
video frame becomes before the linear map.

Features of video frame t (time t / fps), see `MelFeatureSpec`: the StyleLipSync log-mel (80 bands, 100 Hz)
and, optionally, a few nonlinear per-frame spectral summaries (energy, centroid, formant-range mean
frequencies, broad-band shares: `spectral_shape`), normalised per column — over the whole clip, or, for the
look-ahead variant, by running statistics of the audio heard so far (so no future audio is needed) — the
mel pooled to fewer bands, taken at mel frames from `past` before to `future` after the frame's centre,
averaged over `stride` frames; optionally one-hot English phone or viseme classes from pocketsphinx's phone
decoder over the same span (`recognise_phones`; needs the whole clip, English only, optional); optionally
Praat formant (F1–F3, bandwidths), voicing, F0, intensity and harmonicity tracks (`audio.formants`, any
language, normalised over the whole clip) over the same span, with products of formants and loudness /
voicing (`FORMANT_INTERACTIONS`); optionally speech embeddings of windows around the frame
(`audio.speech_embedding`, any language, whole-clip normalisation; in the shipped default). A
linear map then gives the six outputs, optionally followed by a short FIR smoothing over video frames.
Look-ahead (how much audio after time t the prediction at t depends on) = future mel frames + 16 ms STFT
half-window + future smoothing taps (Praat's pitch window reads 4 ms more; an embedding window, 392.5 ms).

`ClipFeatures` holds a clip's normalised per-mel-frame inputs and assembles the feature rows of any range of
video frames from them (the model predicts long clips in pieces; the fitting script,
`scripts/fit_mouth_shape.py`, takes the whole range).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from stylelipsync.audio.formants import DEFAULT_CEILING_HZ, FORMANT_COLUMNS, N_FORMANT, formant_tracks
from stylelipsync.audio.mel import (
    F_MAX,
    F_MIN,
    MEL_FRAMES_PER_SECOND,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    htk_mel_frequencies,
    mono,
    resample_16k,
)
from stylelipsync.audio.speech_embedding import EMBEDDING_SIZE, REACH_S, clip_statistics, frame_embeddings
from stylelipsync.errors import StyleLipSyncError

F64 = NDArray[np.float64]
STD_FLOOR = 0.1
STFT_HALF_WINDOW_S = (N_FFT // 2) / SAMPLE_RATE
Normalization = Literal["clip", "running"]
Phones = Literal["none", "visemes", "phones"]

PHONE_SET = (
    "SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
    "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W",
    "Y", "Z", "ZH",
)  # fmt: skip
"""CMU phones pocketsphinx's English phone decoder emits (noise and unknown tokens count as SIL)."""
VISEMES: dict[str, tuple[str, ...]] = {
    "sil": ("SIL",),
    "pbm": ("P", "B", "M"),
    "fv": ("F", "V"),
    "th": ("TH", "DH"),
    "tdn": ("T", "D", "N"),
    "l": ("L",),
    "sz": ("S", "Z"),
    "sh": ("SH", "ZH", "CH", "JH"),
    "kg": ("K", "G", "NG", "HH", "Y"),
    "r": ("R", "ER"),
    "w": ("W", "UW", "UH"),
    "o": ("AO", "OW", "OY", "AW"),
    "a": ("AA", "AE", "AH", "AY"),
    "e": ("EH", "EY"),
    "i": ("IH", "IY"),
}
"""Phones grouped by how they shape the mouth (diphthongs by their first vowel)."""


@dataclass(frozen=True)
class MelFeatureSpec:
    """How the audio around a video frame becomes a feature vector.

    past/future: mel frames (10 ms) of context before/after the frame centre; stride: context frames are
    averaged in groups of this many (fewer, smoother features); band_pool: adjacent mel bands averaged;
    normalization: "clip" (whole-clip mean/std per band) or "running" (mean/std of the audio so far, started
    from the training prior with weight `prior_frames`); deltas: append first differences of the context;
    mel: include the log-mel context at all (off for formant-only models); formants: Praat formant, voicing,
    intensity and harmonicity tracks (`audio.formants`, Burg ceiling `formant_ceiling_hz`) over the same
    context, normalised per clip (whole-clip only: Praat's analysis is not streamed); formant_interactions:
    also the products of the normalised tracks in `FORMANT_INTERACTIONS` (formants × loudness / voicing), the
    nonlinear terms a ridge cannot form; embedding: Google's speech_embedding (`audio.speech_embedding`, 96
    numbers per ~0.78 s window, from a model trained on far more voices than the shared clips) of windows
    centred `embedding_offset_ms` from the frame time, and of `embedding_context` more windows each side,
    `embedding_step_ms` apart, normalised per clip (whole-clip only).
    """

    past: int = 20
    future: int = 20
    stride: int = 1
    band_pool: int = 5
    normalization: Normalization = "clip"
    prior_frames: int = 100
    deltas: bool = False
    phones: Phones = "none"
    phone_stride: int = 5
    spectral: bool = False
    spectral_bands: bool = False
    mel: bool = True
    formants: bool = False
    formant_ceiling_hz: float = DEFAULT_CEILING_HZ
    formant_interactions: bool = False
    embedding: bool = False
    embedding_offset_ms: float = 0.0
    embedding_context: int = 0
    embedding_step_ms: float = 40.0

    def __post_init__(self) -> None:
        if N_MELS % self.band_pool:
            raise ValueError(f"band_pool must divide {N_MELS}, got {self.band_pool}")
        if self.past < 0 or self.future < 0 or self.stride < 1:
            raise ValueError(f"bad context: past={self.past}, future={self.future}, stride={self.stride}")
        if (self.past + self.future + 1) % self.stride:
            raise ValueError(
                f"stride {self.stride} must divide the context length {self.past + self.future + 1}"
            )
        if self.normalization not in ("clip", "running"):
            raise ValueError(f"normalization must be 'clip' or 'running', got {self.normalization!r}")
        if self.phones not in ("none", "visemes", "phones"):
            raise ValueError(f"phones must be 'none', 'visemes' or 'phones', got {self.phones!r}")
        if self.phones != "none" and (self.past + self.future + 1) % self.phone_stride:
            raise ValueError(f"phone_stride {self.phone_stride} must divide {self.past + self.future + 1}")
        if self.formant_interactions and not self.formants:
            raise ValueError("formant_interactions needs formants=True")
        if self.formants and self.normalization != "clip":
            raise ValueError("formant features are normalised per clip: use normalization='clip'")
        if self.embedding and (self.normalization != "clip" or self.embedding_context < 0):
            raise ValueError("speech embeddings are normalised per clip and need embedding_context ≥ 0")
        if not self.mel and (self.deltas or self.spectral_size):
            raise ValueError("deltas and spectral summaries need the mel features (mel=True)")

    @property
    def bands(self) -> int:
        return N_MELS // self.band_pool

    @property
    def steps(self) -> int:
        return (self.past + self.future + 1) // self.stride

    @property
    def phone_classes(self) -> int:
        return {"none": 0, "visemes": len(VISEMES), "phones": len(PHONE_SET)}[self.phones]

    @property
    def spectral_size(self) -> int:
        """Spectral-shape numbers per frame (0, 6 or 14)."""
        return (N_SPECTRAL if self.spectral else 0) + (N_SPECTRAL_BANDS if self.spectral_bands else 0)

    @property
    def mel_size(self) -> int:
        if not self.mel:
            return 0
        return self.steps * self.bands * (2 if self.deltas else 1) - (self.bands if self.deltas else 0)

    @property
    def size(self) -> int:
        phone_steps = (self.past + self.future + 1) // self.phone_stride
        spectral = self.steps * self.spectral_size
        per_step = N_FORMANT + (len(FORMANT_INTERACTIONS) if self.formant_interactions else 0)
        formants = self.steps * per_step if self.formants else 0
        return self.mel_size + phone_steps * self.phone_classes + spectral + formants + self.embedding_size

    @property
    def embedding_size(self) -> int:
        return (2 * self.embedding_context + 1) * EMBEDDING_SIZE if self.embedding else 0

    @property
    def phone_spec(self) -> MelFeatureSpec:
        """The context layout of the phone one-hots (same span, their own stride, no deltas)."""
        return MelFeatureSpec(past=self.past, future=self.future, stride=self.phone_stride)

    @property
    def lookahead_seconds(self) -> float:
        """Audio after the frame time that the features read: context + STFT half-window (the mel-frame
        context, unless only embeddings are read) or the last speech-embedding window's end, if later."""
        mel = self.future / MEL_FRAMES_PER_SECOND + STFT_HALF_WINDOW_S
        last = (self.embedding_offset_ms + self.embedding_context * self.embedding_step_ms) / 1000.0 + REACH_S
        only_embedding = self.embedding and not (self.mel or self.formants or self.phones != "none")
        return last if only_embedding else max(mel, last) if self.embedding else mel


def recognise_phones(wave: np.ndarray, sample_rate: int) -> list[tuple[str, int, int]]:
    """English phone segments (phone, first, last 10 ms frame) by pocketsphinx's offline phone decoder.

    The beams are widened to 1e-20: with the defaults, long clips silently collapse into one phone.
    """
    try:
        from pocketsphinx import Decoder, get_model_path
    except ImportError as exc:
        raise StyleLipSyncError(
            "this mouth-shape model needs pocketsphinx (pip install pocketsphinx==5.1.1); "
            "or use the mel-only model: MouthShapeModel.default(phones=False)"
        ) from exc
    x = mono(wave)
    if sample_rate != SAMPLE_RATE:
        x = resample_16k(x, sample_rate)
    pcm = (np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    models = Path(get_model_path()) / "en-us"
    decoder = Decoder(
        hmm=str(models / "en-us"),
        allphone=str(models / "en-us-phone.lm.bin"),
        beam=1e-20,
        pbeam=1e-20,
        lw=2.0,
        samprate=SAMPLE_RATE,
        loglevel="FATAL",
    )
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    return [(seg.word, int(seg.start_frame), int(seg.end_frame)) for seg in decoder.seg()]


def zscore_clip(x: F64) -> F64:
    """Per-column whole-clip z-score; constant columns become 0 (formant tracks are in mixed units, so no
    common std floor fits them all)."""
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 1e-9, std, 1.0)


FORMANT_INTERACTIONS = (
    ("f1_khz", "intensity_db"),
    ("f2_khz", "intensity_db"),
    ("f1_voiced_khz", "intensity_db"),
    ("f1_khz", "voiced"),
    ("f2_khz", "voiced"),
    ("f1_khz", "f2_khz"),
    ("f1_khz", "f1_khz"),
    ("f2_khz", "f2_khz"),
    ("intensity_db", "intensity_db"),
    ("f1_khz", "hnr_db"),
)
"""Pairs of formant-track columns whose product (of clip-normalised tracks) `formant_interactions` adds."""


def formant_products(tracks: F64) -> F64:
    """(N, len(FORMANT_INTERACTIONS)) clip-normalised products of pairs of clip-normalised formant tracks."""
    col = {name: k for k, name in enumerate(FORMANT_COLUMNS)}
    return zscore_clip(
        np.stack([tracks[:, col[a]] * tracks[:, col[b]] for a, b in FORMANT_INTERACTIONS], axis=1)
    )


def phone_onehots(segments: list[tuple[str, int, int]], num_mel: int, phones: Phones) -> F64:
    """(num_mel, C) one-hot phone or viseme class of every 10 ms frame (SIL where nothing was decoded)."""
    if phones == "visemes":
        names = list(VISEMES)
        index = {p: i for i, group in enumerate(VISEMES.values()) for p in group}
    else:
        names = list(PHONE_SET)
        index = {p: i for i, p in enumerate(PHONE_SET)}
    out = np.zeros((num_mel, len(names)))
    out[:, 0] = 1.0
    for phone, first, last in segments:
        lo, hi = max(first, 0), min(last + 1, num_mel)
        if lo < hi:
            out[lo:hi] = 0.0
            out[lo:hi, index.get(phone, 0)] = 1.0
    return out


N_SPECTRAL = 6
"""Spectral-shape numbers per frame used when `MelFeatureSpec.spectral`; `spectral_bands` adds 8 more."""
N_SPECTRAL_BANDS = 8
BROAD_BANDS_HZ = (0.0, 300.0, 600.0, 1000.0, 2000.0, 4000.0, 8000.0)


@lru_cache(maxsize=1)
def _band_hz() -> F64:
    return htk_mel_frequencies(N_MELS + 2, F_MIN, F_MAX)[1:-1]


def spectral_shape(mel: F64) -> F64:
    """(N, 14) per-frame nonlinear summaries of a log10-mel spectrogram that a linear map of log-mel cannot
    form: log energy, spectral centroid, flatness, share below 1 kHz, the power-weighted mean frequency in
    the first- and second-formant ranges (250–1000 Hz, 900–2800 Hz; crude F1/F2 proxies, kHz); then the
    log power share of six broad bands, spectral spread and 85 % roll-off (kHz)."""
    hz = _band_hz()
    power = 10.0 ** (mel - mel.max(axis=1, keepdims=True))
    total = power.sum(axis=1)
    energy = np.log10(total) + mel.max(axis=1)
    centroid = power @ hz / total / 1000.0
    flatness = np.log(power + 1e-12).mean(axis=1) - np.log(total / mel.shape[1])
    low = np.log10(power[:, hz < 1000].sum(axis=1) / total + 1e-12)
    out = [energy, centroid, flatness, low]
    for lo, hi in ((250.0, 1000.0), (900.0, 2800.0)):
        band = (hz >= lo) & (hz <= hi)
        out.append(power[:, band] @ hz[band] / (power[:, band].sum(axis=1) + 1e-12) / 1000.0)
    for lo, hi in itertools.pairwise(BROAD_BANDS_HZ):
        out.append(np.log10(power[:, (hz >= lo) & (hz < hi)].sum(axis=1) / total + 1e-12))
    spread = np.sqrt(np.maximum(power @ (hz / 1000.0) ** 2 / total - centroid**2, 0.0))
    rolloff = hz[np.minimum((np.cumsum(power, axis=1) < 0.85 * total[:, None]).sum(axis=1), len(hz) - 1)]
    out += [spread, rolloff / 1000.0]
    return np.stack(out, axis=1)


def frame_features(mel: F64) -> F64:
    """(N, 80 + 14) log-mel bands and their spectral shape: the per-10 ms numbers that get normalised."""
    return np.concatenate([mel, spectral_shape(mel)], axis=1)


def normalized_mel(
    mel: F64, spec: MelFeatureSpec, prior_mean: F64 | None = None, prior_std: F64 | None = None
) -> F64:
    """(N, 80) log-mel normalised per band as `spec.normalization` says (running needs the prior)."""
    if spec.normalization == "clip":
        return (mel - mel.mean(axis=0)) / np.maximum(mel.std(axis=0), STD_FLOOR)
    if prior_mean is None or prior_std is None:
        raise ValueError("running normalisation needs the prior mean and std of the training audio")
    k = float(spec.prior_frames)
    count = k + np.arange(1, len(mel) + 1, dtype=np.float64)[:, None]
    mean = (k * prior_mean + np.cumsum(mel, axis=0)) / count
    second = (k * (prior_std**2 + prior_mean**2) + np.cumsum(mel**2, axis=0)) / count
    std = np.sqrt(np.maximum(second - mean**2, 0.0))
    return (mel - mean) / np.maximum(std, STD_FLOOR)


def context_features(
    frames: F64, spec: MelFeatureSpec, num_frames: int, fps: float, lo: int = 0, hi: int | None = None
) -> F64:
    """(hi − lo, spec.size) context of per-mel-frame features `frames` (N, bands) around video frames
    lo … hi − 1 of a clip of `num_frames` (default: all of them).

    Mel frames outside the audio count as zeros (the normalised mean).
    """
    hi = num_frames if hi is None else hi
    last = int(np.rint((num_frames - 1) * MEL_FRAMES_PER_SECOND / fps)) if num_frames > 0 else 0
    tail = max(0, last + 1 - len(frames))
    centres = np.rint(np.arange(lo, hi) * MEL_FRAMES_PER_SECOND / fps).astype(np.int64)
    padded = np.pad(frames, ((spec.past, spec.future + tail), (0, 0)))
    # Box-average `stride` consecutive frames via a cumulative sum, then sample the context steps.
    csum = np.concatenate([np.zeros((1, padded.shape[1])), np.cumsum(padded, axis=0)])
    offsets = np.arange(spec.steps) * spec.stride
    starts = centres[:, None] + offsets[None, :]
    ctx = (csum[starts + spec.stride] - csum[starts]) / spec.stride
    if spec.deltas:
        ctx = np.concatenate([ctx, np.diff(ctx, axis=1)], axis=1)
    return ctx.reshape(hi - lo, -1)


@dataclass(frozen=True)
class ClipFeatures:
    """A clip's normalised per-mel-frame inputs (and per-frame speech embeddings), from which `rows` assembles
    the feature rows of any range of video frames: the same rows as for the whole clip at once (per-clip
    statistics are taken here, over the whole clip), in pieces of bounded memory."""

    spec: MelFeatureSpec
    num_frames: int
    fps: float
    pooled: F64 | None
    extra: F64 | None
    tracks: F64 | None
    embeddings: NDArray[np.floating] | None
    embedding_mean: F64 | None
    embedding_std: F64 | None
    onehot: F64 | None

    @classmethod
    def of(
        cls,
        mel: F64,
        spec: MelFeatureSpec,
        num_frames: int,
        fps: float,
        prior: tuple[F64, F64],
        segments: list[tuple[str, int, int]] | None = None,
        wave: np.ndarray | None = None,
        sample_rate: int = SAMPLE_RATE,
        formant_frames: F64 | None = None,
        embedding_frames: np.ndarray | None = None,
    ) -> ClipFeatures:
        """The clip-level inputs: `mel` the clip's log-mel, `prior` the mean and std of the 94
        `frame_features` over the training audio (for running normalisation); phone `segments`, formant tracks
        and speech embeddings (`frame_embeddings` with the spec's offset, context and step) are computed from
        `wave` if not given."""
        extra = None
        if spec.spectral_size:
            used = np.r_[
                np.arange(N_MELS + (N_SPECTRAL if spec.spectral else 0)),
                np.arange(
                    N_MELS + N_SPECTRAL,
                    N_MELS + N_SPECTRAL + (N_SPECTRAL_BANDS if spec.spectral_bands else 0),
                ),
            ]
            norm = normalized_mel(frame_features(mel)[:, used], spec, prior[0][used], prior[1][used])
            mel_norm, extra = norm[:, :N_MELS], norm[:, N_MELS:]
        else:
            mel_norm = normalized_mel(mel, spec, prior[0][:N_MELS], prior[1][:N_MELS])
        pooled = (
            mel_norm.reshape(len(mel_norm), spec.bands, spec.band_pool).mean(axis=2) if spec.mel else None
        )
        tracks = None
        if spec.formants:
            if formant_frames is None:
                if wave is None:
                    raise ValueError("formant features need the formant tracks or the wave")
                formant_frames = formant_tracks(mono(wave), len(mel), sample_rate, spec.formant_ceiling_hz)
            tracks = zscore_clip(formant_frames[: len(mel)])
            if spec.formant_interactions:
                tracks = np.concatenate([tracks, formant_products(tracks)], axis=1)
        embeddings = mean = std = None
        if spec.embedding:
            if embedding_frames is None:
                if wave is None:
                    raise ValueError("speech-embedding features need the embeddings or the wave")
                offset, step = spec.embedding_offset_ms / 1e3, spec.embedding_step_ms / 1e3
                context = spec.embedding_context
                embedding_frames = frame_embeddings(wave, sample_rate, num_frames, fps, offset, context, step)
            embeddings = np.asarray(embedding_frames)
            mean, std = clip_statistics(embeddings, spec.embedding_size)
        onehot = None
        if spec.phones != "none":
            if segments is None:
                if wave is None:
                    raise ValueError("phone features need the phone segments or the wave")
                segments = recognise_phones(wave, sample_rate)
            onehot = phone_onehots(segments, len(mel), spec.phones)
        return cls(spec, num_frames, fps, pooled, extra, tracks, embeddings, mean, std, onehot)

    def rows(self, lo: int, hi: int) -> F64:
        """(hi − lo, spec.size) feature rows of video frames lo…hi − 1."""
        spec, n, fps = self.spec, self.num_frames, self.fps
        plain = replace(spec, deltas=False)
        parts = [np.zeros((hi - lo, 0))]
        if self.pooled is not None:
            parts.append(context_features(self.pooled, spec, n, fps, lo, hi))
        if self.extra is not None:
            parts.append(context_features(self.extra, plain, n, fps, lo, hi))
        if self.tracks is not None:
            parts.append(context_features(self.tracks, plain, n, fps, lo, hi))
        if self.embeddings is not None and self.embedding_mean is not None and self.embedding_std is not None:
            e = self.embeddings[lo:hi].astype(np.float64)
            parts.append(
                ((e - self.embedding_mean) / self.embedding_std).reshape(hi - lo, spec.embedding_size)
            )
        if self.onehot is not None:
            parts.append(context_features(self.onehot, spec.phone_spec, n, fps, lo, hi))
        return np.concatenate(parts, axis=1)


__all__ = [
    "FORMANT_INTERACTIONS",
    "N_SPECTRAL",
    "PHONE_SET",
    "STD_FLOOR",
    "VISEMES",
    "ClipFeatures",
    "MelFeatureSpec",
    "context_features",
    "formant_products",
    "frame_features",
    "normalized_mel",
    "phone_onehots",
    "recognise_phones",
    "spectral_shape",
    "zscore_clip",
]
