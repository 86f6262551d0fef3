"""Media I/O with PyAV: probe files, stream video frames, load audio, write H.264/AAC MP4s."""

from stylelipsync.formats import IMAGE_SUFFIXES, SAMPLE_RATE
from stylelipsync.media.audio_reader import load_audio
from stylelipsync.media.cut import cut_clip
from stylelipsync.media.image import is_image_path, read_image
from stylelipsync.media.probe import MediaInfo, probe
from stylelipsync.media.rate import to_rate
from stylelipsync.media.video_reader import Frame, VideoReader
from stylelipsync.media.video_writer import VideoWriter

__all__ = [
    "IMAGE_SUFFIXES",
    "SAMPLE_RATE",
    "Frame",
    "MediaInfo",
    "VideoReader",
    "VideoWriter",
    "cut_clip",
    "is_image_path",
    "load_audio",
    "probe",
    "read_image",
    "to_rate",
]
