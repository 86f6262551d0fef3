"""The held-out checks of an adapted model: reconstruction PSNR/SSIM and a preview driven by new speech.

The held-out end of the target (``TargetData.heldout_dir``) is never read by adaptation; here the base and
the adapted model reconstruct it from its own audio, and ``preview.mp4`` shows the held-out part dubbed with
other speech through the ordinary ``LipSyncPipeline``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import cv2
import numpy as np
import torch

from stylelipsync.adaptation.data import TargetData
from stylelipsync.adaptation.output import PREVIEW_FILE, RUN_DIR_NAME
from stylelipsync.audio.normalization import normalize_mel
from stylelipsync.errors import MediaError, StyleLipSyncError
from stylelipsync.evaluation.image_quality import psnr, ssim
from stylelipsync.face.mask import keep_mask
from stylelipsync.formats import SAMPLE_RATE
from stylelipsync.media import VideoReader, VideoWriter, load_audio
from stylelipsync.media.container import check_file
from stylelipsync.models import StyleLipSync
from stylelipsync.pipelines import LipSyncPipeline
from stylelipsync.training.dataset import ClipArrays, read_manifest
from stylelipsync.training.preprocess import FPS


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 127.5 - 1.0)


@torch.no_grad()
def heldout_reconstruction(
    model: StyleLipSync, data: TargetData, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """PSNR/SSIM of the model's output on the held-out frames, driven by their own audio.

    Each held-out frame is masked as in training and decoded with the held-out audio; the identity reference
    is the first frame of the training part with a face (``generate`` also takes the first one). Scores are
    on the whole output crop at the model's resolution against the true crop, frames with a face only.
    """
    if data.heldout_dir is None:
        raise StyleLipSyncError("no held-out frames to validate on (holdout 0); use a holdout fraction > 0")
    res = model.config.resolution
    held = ClipArrays(read_manifest(data.heldout_dir)[0])
    frames = np.asarray(held.array("frames"))
    valid = np.asarray(held.array("valid"), dtype=bool)
    masks = np.asarray(held.array("masks"))
    masked = torch.stack(
        [_to_tensor(_resize(f * keep_mask(m)[..., None], res)) for f, m in zip(frames, masks, strict=True)]
    )
    mel = torch.from_numpy(np.stack([held.mel_window(t) for t in range(len(frames))]))
    if model.config.mel_normalization == "per_clip":
        mean, std = held.stats()
        mel = normalize_mel(mel, torch.from_numpy(mean), torch.from_numpy(std))
    train = ClipArrays(read_manifest(data.train_dir)[0])
    first = int(np.flatnonzero(np.asarray(train.array("valid"), dtype=bool))[0])
    reference = _to_tensor(_resize(np.asarray(train.array("frames")[first]).astype(np.float32), res))
    model = model.to(device)
    x_hat = model.infer(masked, mel, reference).clamp(-1, 1)
    out = ((x_hat + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    idx = np.flatnonzero(valid)
    truth = [_resize(frames[t], res) for t in idx]
    return {
        "psnr": float(np.mean([psnr(out[t], y) for t, y in zip(idx, truth, strict=True)])),
        "ssim": float(np.mean([ssim(out[t], y) for t, y in zip(idx, truth, strict=True)])),
        "frames": float(len(idx)),
    }


def write_heldout_video(data: TargetData, out: str | Path) -> Path:
    """The held-out end of the target video (original resolution, 25 fps, no audio) as an MP4."""
    out = Path(out)
    if out.is_file():
        return out
    with VideoReader(data.video, fps=FPS) as reader:
        writer: VideoWriter | None = None
        try:
            for frame in reader:
                if frame.index >= data.num_frames:
                    break
                if frame.index < data.cut:
                    continue
                if writer is None:
                    h, w = frame.image.shape[:2]
                    writer = VideoWriter(out, FPS, w, h, preset="veryfast", protect=[data.video])
                writer.write(frame.image)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    if writer is None:
        raise MediaError(f"{data.video}: the held-out frames could not be decoded again")
    writer.close()
    return out


def trim_audio(src: str | Path, out: str | Path, seconds: float) -> Path:
    """The first ``seconds`` of ``src`` (any audio or video file) as a 16 kHz mono WAV."""
    import soundfile as sf

    wave = load_audio(check_file(src), SAMPLE_RATE)[: int(seconds * SAMPLE_RATE)]
    if len(wave) < SAMPLE_RATE // FPS:
        raise MediaError(f"{src}: holds less than one video frame of audio; give a file with speech")
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.{secrets.token_hex(4)}.tmp.wav")
    sf.write(str(tmp), wave, SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, out)
    return out


def validate(
    data: TargetData,
    base_dir: Path,
    output: Path,
    audio: Path,
    device: str | torch.device = "cpu",
    progress: bool = True,
    preview_seconds: float = 10.0,
) -> tuple[dict[str, dict[str, float]], Path]:
    """Held-out PSNR/SSIM of the base and adapted models; ``output/preview.mp4`` of the held-out part driven
    by the first ``preview_seconds`` of ``audio``."""
    adapted = StyleLipSync.from_pretrained(output)
    metrics = {
        "base": heldout_reconstruction(StyleLipSync.from_pretrained(base_dir), data, device),
        "adapted": heldout_reconstruction(adapted, data, device),
    }
    run_dir = output / RUN_DIR_NAME
    clip = write_heldout_video(data, data.root / "heldout.mp4")
    speech = trim_audio(audio, run_dir / "validate_audio.wav", preview_seconds)
    preview = output / PREVIEW_FILE
    LipSyncPipeline(adapted, device=device)(clip, speech, preview, overwrite=True, progress=progress)
    return metrics, preview


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """Aligned PSNR/SSIM lines, one per model."""
    rows = [f"  {'model':<8} {'PSNR (dB)':>9} {'SSIM':>6} {'frames':>6}"]
    for name, m in metrics.items():
        rows.append(f"  {name:<8} {m['psnr']:>9.2f} {m['ssim']:>6.3f} {int(m['frames']):>6}")
    return "\n".join(rows)


__all__ = ["format_metrics", "heldout_reconstruction", "trim_audio", "validate", "write_heldout_video"]
