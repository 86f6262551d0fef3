"""Audio features: the StyleLipSync log-mel front-end, per-frame mel windows and voice activity."""

from stylelipsync.audio.mel import (
    HOP_LENGTH,
    MEL_FRAMES_PER_SECOND,
    N_MELS,
    SAMPLE_RATE,
    log_mel_spectrogram,
    mel_filterbank,
    num_mel_frames,
)
from stylelipsync.audio.vad import frame_energy, voice_activity
from stylelipsync.audio.windows import WINDOW, mel_windows, num_video_frames, window_starts

__all__ = [
    "HOP_LENGTH",
    "MEL_FRAMES_PER_SECOND",
    "N_MELS",
    "SAMPLE_RATE",
    "WINDOW",
    "frame_energy",
    "log_mel_spectrogram",
    "mel_filterbank",
    "mel_windows",
    "num_mel_frames",
    "num_video_frames",
    "voice_activity",
    "window_starts",
]
