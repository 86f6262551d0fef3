"""`load_audio`: formats, rates, channel mean, exact length, timeline alignment, errors, real files."""

from __future__ import annotations

import wave as wav_module
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from stylelipsync.errors import MediaError
from stylelipsync.media import load_audio
from test_media_synth import noise_bursts, tone, write_audio, write_video


def _lag_ms(decoded: np.ndarray, reference: np.ndarray, sample_rate: int = 16000) -> float:
    """Lag (ms) of the cross-correlation peak of two signals (positive: `decoded` is late)."""
    n = min(len(decoded), len(reference), sample_rate)
    corr = np.correlate(decoded[:n], reference[:n], "full")
    return (int(np.argmax(corr)) - (n - 1)) * 1000.0 / sample_rate


def _encoder_available(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        return False
    return True


# codec, rate, suffix, muxer, lossy. Lossy codecs lose some energy on white noise.
CASES = [
    ("pcm_s16le", 44100, "wav", None, False),
    ("pcm_s16le", 48000, "wav", None, False),
    ("libmp3lame", 44100, "mp3", None, True),
    ("aac", 48000, "m4a", "ipod", True),
    ("flac", 48000, "flac", None, False),
    ("libopus", 48000, "ogg", None, True),
]


@pytest.mark.parametrize(("codec", "rate", "ext", "fmt", "lossy"), CASES)
def test_formats_rates_length_and_alignment(
    tmp_path: Path, codec: str, rate: int, ext: str, fmt: str | None, lossy: bool
) -> None:
    if not _encoder_available(codec):
        pytest.skip(f"PyAV has no {codec} encoder here")
    seconds = 1.7 + 37 / rate
    left = noise_bursts(seconds, rate)
    stereo = np.stack([left, np.zeros_like(left)])
    path = write_audio(tmp_path / f"a.{ext}", stereo, rate, codec, fmt)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - seconds * 16000) <= 16 * 3  # within 3 ms
    # Mono is the mean of the channels: half the left channel (a 0.707 downmix would be 3 dB louder).
    reference = load_audio(write_audio(tmp_path / "ref.wav", left[None, :], rate, "pcm_s16le")) / 2
    level = np.sqrt(np.mean(x**2)) / np.sqrt(np.mean(reference**2))
    assert level == pytest.approx(1.0, abs=0.2 if lossy else 0.01)
    # Encoder delay (mp3, AAC priming, Opus pre-skip) must be removed: no time shift.
    assert abs(_lag_ms(x, reference)) <= 1.0


def test_channel_mean_is_exact_without_resampling(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    stereo = (0.4 * rng.standard_normal((2, 8000))).clip(-0.99, 0.99).astype(np.float32)
    x = load_audio(write_audio(tmp_path / "s.wav", stereo, 16000, "pcm_s16le"))
    assert len(x) == 8000
    assert np.allclose(x, stereo.mean(axis=0), atol=2 / 32768)


def test_tone_keeps_its_pitch_after_resampling(tmp_path: Path) -> None:
    x = load_audio(write_audio(tmp_path / "t.wav", tone(1.0, 44100, freq=1000.0), 44100, "pcm_s16le"))
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    assert np.argmax(spectrum) * 16000 / len(x) == pytest.approx(1000.0, abs=2.0)


def test_audio_track_of_a_video(tmp_path: Path) -> None:
    wave = np.stack([noise_bursts(2.0, 44100), noise_bursts(2.0, 44100)])
    path = write_video(tmp_path / "v.mp4", 50, 25, audio=wave, sample_rate=44100)
    x = load_audio(path)
    assert abs(len(x) - 32000) <= 16
    reference = load_audio(write_audio(tmp_path / "ref.wav", wave[:1], 44100, "pcm_s16le"))
    assert abs(_lag_ms(x, reference)) <= 1.0


def test_late_audio_is_padded_onto_the_file_timeline(tmp_path: Path) -> None:
    """Audio that starts 0.5 s after the video starts 0.5 s into the returned signal."""
    path = tmp_path / "late.mp4"
    sr = 16000
    wave = noise_bursts(1.0, sr)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=sr, layout="mono")
        for k in range(40):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 25)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        for start in range(0, len(wave), 1024):
            chunk = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = sr, start + sr // 2, Fraction(1, sr)
            for packet in audio.encode(chunk):
                container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    x = load_audio(path)
    assert abs(len(x) - 1.5 * sr) <= 32
    # Before the audio's first AAC frame (which starts 1024 samples early: encoder priming) all is silent.
    assert np.abs(x[: sr // 2 - 1100]).max() < 1e-3
    assert abs(_lag_ms(x, np.concatenate([np.zeros(sr // 2, np.float32), wave]), sr)) <= 1.0


def test_no_audio_stream(tmp_path: Path) -> None:
    path = write_video(tmp_path / "mute.mp4", 5)
    with pytest.raises(MediaError, match=r"mute.mp4.*no audio stream"):
        load_audio(path)


def test_audio_without_samples(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    with wav_module.open(str(path), "wb") as empty:
        empty.setnchannels(1)
        empty.setsampwidth(2)
        empty.setframerate(16000)
        empty.writeframes(b"")
    with pytest.raises(MediaError, match=r"nothing.wav.*no samples"):
        load_audio(path)


@pytest.mark.parametrize(("codec", "ext", "fmt"), [("flac", "flac", None), ("aac", "m4a", "ipod")])
def test_truncated_audio_file(tmp_path: Path, codec: str, ext: str, fmt: str | None) -> None:
    path = write_audio(tmp_path / f"long.{ext}", tone(2.0, 16000), 16000, codec, fmt)
    cut = tmp_path / f"cut.{ext}"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=rf"cut.{ext}.*truncated"):
        load_audio(cut)


def _manifest(media_dir: Path) -> dict[str, float]:
    rows = (media_dir / "MANIFEST.tsv").read_text().splitlines()[1:]
    return {r.split("\t")[0]: float(r.split("\t")[5]) for r in rows}


@pytest.mark.parametrize(
    ("name", "tolerance_s"),
    [
        ("sls_RoyBlunt_0_10s.wav", 0.002),
        ("vrt_audio_1.wav", 0.002),
        ("edtalk_teaser.mp3", 0.005),
        ("sadtalker_WDA_KatieHill_000.mp4", 0.07),
        ("edtalk_uncrop_Obama.mp4", 0.07),
    ],
)
def test_real_audio_lengths_match_manifest(media_dir: Path, name: str, tolerance_s: float) -> None:
    x = load_audio(media_dir / name)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    assert len(x) / 16000 == pytest.approx(_manifest(media_dir)[name], abs=tolerance_s)
    assert 0.005 < np.sqrt(np.mean(x**2)) < 0.5


def test_real_wav_is_the_exact_channel_mean(media_dir: Path) -> None:
    stereo, rate = soundfile.read(media_dir / "sls_RoyBlunt_0_10s.wav", dtype="float32")
    assert rate == 16000 and stereo.shape == (160768, 2)
    x = load_audio(media_dir / "sls_RoyBlunt_0_10s.wav")
    assert len(x) == 160768
    assert np.allclose(x, stereo.mean(axis=1), atol=1e-6)


def test_layout_change_mid_stream_is_handled() -> None:
    """Broadcast files can switch from stereo to mono: the resampler is restarted, nothing is lost."""
    from stylelipsync.media.audio_reader import _decode_mono

    def frames() -> list[av.AudioFrame]:
        out = []
        for i, layout in enumerate(["stereo", "stereo", "mono", "mono"]):
            channels = 2 if layout == "stereo" else 1
            data = np.full((channels, 1600), 0.1 * (i + 1), np.float32)
            frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = 16000, i * 1600, Fraction(1, 16000)
            out.append(frame)
        return out

    class FakeContainer:
        def decode(self, stream: object) -> list[av.AudioFrame]:
            return frames()

    chunks, first = _decode_mono(FakeContainer(), None, 16000)  # type: ignore[arg-type]
    mono = np.concatenate(chunks)
    assert first == 0.0 and len(mono) == 6400
    assert np.allclose(mono[::1600], [0.1, 0.2, 0.3, 0.4])
