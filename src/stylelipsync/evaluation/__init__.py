"""Evaluation metrics for dubbed videos, one family per module; `stylelipsync evaluate` drives them (jobs →
runner → report).

lse (LSE-D/LSE-C with syncnet_v2), offline_sync + audio_to_mouth (sync scores needing no downloaded weights),
identity (CSIM), image_quality (PSNR, SSIM, LPIPS), inception + fid (FID), lip_distance (LMD), sharpness
(mouth sharpness), jitter + mouth_opening (mouth jitter and motion), silence_leak; see docs/evaluation.md.
"""

METRICS = ("lse", "sync", "csim", "psnr", "ssim", "lpips", "lmd", "sharpness", "jitter", "fid")
DEFAULT_METRICS = ("lse", "sync", "csim", "psnr", "ssim", "lmd", "jitter")
