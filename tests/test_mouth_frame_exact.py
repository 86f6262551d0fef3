"""Frame-exact: what each engine puts inside the mask of output frame t is what it chose for frame t.

Both tests run the real pipeline (`LipSyncPipeline`: decode, track, plan, render, paste back, write) on a real
clip, with inputs whose right output is known per frame, and read the frames as they are handed to the
encoder:

* bank: every stored bank box is painted with a flat colour that names its source frame (the tracker sees
  the real frames), and the selection is fixed to play the bank (the frames of the output) backwards, so
  output frame t must show the colour of the entry chosen for t — not its neighbours' (a lag, a lead, the
  previous frame's mouth reused) and not the frame's own pixels (the original crop pasted back);
* stylelipsync: the audio is a sequence of tones, one 40 ms tone per video frame whose pitch names the frame;
  a stand-in generator paints the colour of the pitch at the centre of the mel window it was given, so output
  frame t must show the colour of the tone at t (a mel window off by one frame, a style or frame reused, the
  generator ignored all show another colour or none).

Colours are saturated, so the seam's colour matching (±48 levels) cannot turn one into another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

import stylelipsync.pipelines.engines.bank as bank_engine
from stylelipsync.audio import log_mel_spectrogram
from stylelipsync.face.crop import warp_to_crop
from stylelipsync.media import VideoWriter, load_audio
from stylelipsync.models import StyleLipSync, StyleLipSyncConfig
from stylelipsync.pipelines import FrameOutput, LipSyncPipeline
from stylelipsync.pipelines import plan as plan_module
from stylelipsync.pipelines.engines.bank.bank import MouthBank
from stylelipsync.pipelines.engines.bank.collect import CropCollector
from stylelipsync.pipelines.engines.bank.select import cuts

CLIP = "dreamtalk_M030_front_neutral_level1_001.mp4"  # 256², 25 fps, 94 frames, a man talking
SPEECH = "sadtalker_answer.wav"  # 2.15 s of speech
FRAMES = 30  # output frames (1.2 s at 25 fps): the clip is longer, so output frame t is source frame t
LABELS = np.array(
    [[230, 25, 25], [25, 230, 25], [25, 25, 230], [230, 230, 25], [25, 230, 230], [230, 25, 230]],
    dtype=np.uint8,
)
"""Six saturated colours: frame t is labelled t mod 6, so frames t−2 … t+3 all carry another colour."""
TONES_HZ = (250.0, 500.0, 1000.0, 2000.0, 3500.0, 6000.0)
"""The pitch of each label, an octave or so apart (several mel bands between any two)."""
TOLERANCE = 60
"""Largest per-channel distance of a pixel from its label colour (colour matching moves it ≤ 48 levels)."""


# ----------------------------------------------------------------------------------------------- helpers


@contextmanager
def recording_writers(record: dict[str, list[np.ndarray]]) -> Iterator[None]:
    """Make the pipeline's VideoWriters also keep a copy of every frame they are given."""

    class Recorder(VideoWriter):
        def write(self, image: np.ndarray) -> None:
            record.setdefault(self.path.name, []).append(image.copy())
            super().write(image)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan_module, "VideoWriter", Recorder)
        yield


def run(
    pipe: LipSyncPipeline, video: Path, audio: Path, output: Path, **opts: Any
) -> tuple[list[np.ndarray], list[FrameOutput]]:
    """The frames written to `output` and the per-frame callback outputs (silence not gated)."""
    outputs: list[FrameOutput] = []
    written: dict[str, list[np.ndarray]] = {}
    with recording_writers(written):
        result = pipe(video, audio, output, callback=outputs.append, keep_silence=True, **opts)
    assert result.frames == FRAMES and result.frames_with_face == FRAMES
    return written[output.name], outputs


def labels_inside_mask(frame: np.ndarray, out: FrameOutput) -> np.ndarray:
    """(7,) fraction of the fully regenerated pixels (keep < 0.02) of a written frame nearest each label
    within `TOLERANCE`, and (last) of those near none."""
    assert out.transform is not None and out.keep is not None
    crop = warp_to_crop(frame, out.transform, out.keep.shape[0]).astype(np.int16)
    inside = crop[out.keep < 0.02]
    assert len(inside) > 500, "the mask holds too few pixels to read a label"
    dist = np.abs(inside[:, None, :] - LABELS[None].astype(np.int16)).max(axis=2)
    near = dist.min(axis=1) <= TOLERANCE
    counts = np.bincount(dist.argmin(axis=1)[near], minlength=len(LABELS)).astype(float)
    return np.append(counts, (~near).sum()) / len(inside)


def assert_labels(
    written: list[np.ndarray], outputs: list[FrameOutput], expected: np.ndarray, least: float
) -> None:
    """Frame t shows label `expected[t]` over at least `least` of its mask, and no other label in it."""
    assert [o.index for o in outputs] == list(range(FRAMES))
    wrong = []
    for t, (frame, out) in enumerate(zip(written, outputs, strict=True)):
        fractions = labels_inside_mask(frame, out)
        others = np.delete(fractions[:-1], expected[t])
        if fractions[expected[t]] < least or others.max() > 0.02:
            wrong.append((t, int(expected[t]), np.round(fractions, 2).tolist()))
    assert not wrong, f"(frame, wanted label, fractions of labels 0-5 and of none): {wrong}"


# ----------------------------------------------------------------------------------------------- bank


def test_bank_frame_t_shows_the_entry_chosen_for_t(
    media_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wave = load_audio(media_dir / SPEECH, 16000)[: FRAMES * 640]
    sf.write(tmp_path / "speech.wav", wave, 16000)

    collect = CropCollector.__call__

    def labelled(self: CropCollector, t: int, frame: np.ndarray, landmarks: Any) -> None:
        collect(self, t, np.broadcast_to(LABELS[t % len(LABELS)], frame.shape), landmarks)

    banks: list[MouthBank] = []

    class Recorded(MouthBank):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            banks.append(self)

    asked: dict[str, np.ndarray] = {}

    def backwards(target: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        asked["target"] = target
        return np.arange(len(target), dtype=np.int64)[::-1].copy()

    predict = bank_engine.MouthShapeModel.predict

    def recorded_predict(self: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        asked["predicted"] = predict(self, *args, **kwargs)
        return asked["predicted"]

    monkeypatch.setattr(CropCollector, "__call__", labelled)
    monkeypatch.setattr(bank_engine, "MouthBank", Recorded)
    monkeypatch.setattr(bank_engine, "select", backwards)
    monkeypatch.setattr(bank_engine.MouthShapeModel, "predict", recorded_predict)
    pipe = LipSyncPipeline(device="cpu")
    written, outputs = run(pipe, media_dir / CLIP, tmp_path / "speech.wav", tmp_path / "out.mp4")

    (bank,) = banks
    chosen = np.arange(FRAMES)[::-1]
    assert len(bank) == FRAMES and not cuts(chosen, bank.follows).any(), "the bank must play back uncut"
    # The bank's mouth covers the lower face inside the mask (measured: 40-54 % of the mask's core).
    assert_labels(written, outputs, bank.source[chosen] % len(LABELS), least=0.3)

    # The wanted shapes handed to the selection are the speech's prediction for the same frames (no lag).
    opening, wanted = asked["predicted"][:FRAMES, 0], asked["target"][:, 0]
    lags = range(-3, 4)
    corr = [np.corrcoef(np.roll(opening, lag)[3:-3], wanted[3:-3])[0, 1] for lag in lags]
    assert lags[int(np.argmax(corr))] == 0, dict(zip(lags, np.round(corr, 3), strict=True))


# ----------------------------------------------------------------------------------------- stylelipsync


def tone_track(frames: int, fps: float = 25.0, rate: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """Audio of one tone per video frame (frame t: `TONES_HZ[t mod 6]`), and the (frames,) labels."""
    per = int(rate / fps)
    labels = np.arange(frames) % len(TONES_HZ)
    t = np.arange(per) / rate
    wave = np.concatenate([0.3 * np.sin(2 * np.pi * TONES_HZ[c] * t) for c in labels]).astype(np.float32)
    return wave, labels


def tone_bands() -> np.ndarray:
    """(6,) the mel band where each label's tone peaks."""
    t = np.arange(1600) / 16000
    tones = [(0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in TONES_HZ]
    return np.array([int(log_mel_spectrogram(tone)[5].argmax()) for tone in tones])


class ToneColourGenerator(StyleLipSync):
    """A stand-in generator: paints the colour of the tone at the centre of the mel window it was given.

    The audio encoder reads the loudest mel band of the window's centre row (row 10 of 20: the window of
    frame t covers mel frames 4t−8 … 4t+11, so row 10 is centred 20 ms into frame t) and passes its label on
    as the style; MaLS is left out (it mixes neighbouring frames by design); the decoder paints the label's
    colour. Everything around them (mel windows, streaming, chunking, compositing, paste-back) is the real
    pipeline.
    """

    def __init__(self, config: StyleLipSyncConfig, bands: np.ndarray) -> None:
        super().__init__(config)
        self.bands = torch.from_numpy(bands)

    def audio_styles(self, mel: torch.Tensor) -> torch.Tensor:
        peak = mel[:, 10].argmax(dim=1)
        label = (peak[:, None] - self.bands[None]).abs().argmin(dim=1).float()
        return label[:, None, None].expand(-1, self.num_ws, self.config.style_dim).contiguous()

    def mix_styles(self, audio_styles: torch.Tensor, reference_styles: torch.Tensor) -> torch.Tensor:
        return audio_styles

    def decode(
        self, styles: torch.Tensor, face_features: list[torch.Tensor], noise_mode: str = "const"
    ) -> Any:
        label = styles[:, 0, 0].round().long().clamp(0, len(LABELS) - 1)
        colour = torch.from_numpy(LABELS.astype(np.float32) / 127.5 - 1.0)[label]
        size = self.config.resolution
        return colour[:, :, None, None].expand(-1, 3, size, size).contiguous()


def test_stylelipsync_frame_t_shows_the_audio_at_t(media_dir: Path, tmp_path: Path) -> None:
    wave, labels = tone_track(FRAMES)
    sf.write(tmp_path / "tones.wav", wave, 16000)
    torch.manual_seed(0)
    model = ToneColourGenerator(StyleLipSyncConfig.tiny(64), tone_bands())
    assert model.num_ws > 0
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # batch_size 8 does not divide 30: chunk boundaries fall inside the sequence and at its end.
        pipe = LipSyncPipeline(model, device="cpu")
        written, outputs = run(
            pipe, media_dir / CLIP, tmp_path / "tones.wav", tmp_path / "out.mp4", batch_size=8
        )
    finally:
        torch.set_num_threads(before)
    assert_labels(written, outputs, labels, least=0.9)
