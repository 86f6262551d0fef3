"""Training samples from a preprocessed dataset directory (format in ``training/preprocess.py``).

Arrays are opened with ``np.load(mmap_mode="r")`` lazily in each DataLoader worker, so a dataset of any size
costs only the pages a sample touches. Every random choice of a sample (augmentation, reference frame,
wrong-audio offset) comes from the per-sample seed the sampler hands over, which makes the data stream
independent of the number of workers and exactly reproducible on resume.

Train/validation splits are made by **person**, never by clip: clips of one person share face and voice, and a
clip-level split would measure memorisation of the speakers (small-data findings).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from stylelipsync.audio.normalization import mel_stats
from stylelipsync.face.landmarks import LIPS_OUTER
from stylelipsync.face.mask import keep_mask
from stylelipsync.training.sampler import SampleKey, sample_seed

MEL_PER_FRAME = 4
MEL_WINDOW = 20
MEL_OFFSET = 8


@dataclass(frozen=True)
class ClipInfo:
    """One processed clip of the dataset manifest."""

    id: str
    person: str
    num_frames: int
    path: Path
    source: str = ""


@dataclass
class DataConfig:
    """Where the data is and how samples are made (shared by the three trainers)."""

    dataset: str = ""
    resolution: int = 256
    num_frames: int = 5
    mel_norm: str = "none"
    val_persons: tuple[str, ...] = ()
    n_val_persons: int = 2
    split_seed: int = 0
    window_stride: int = 1
    min_ref_distance: int = 25
    positive_prob: float = 0.5
    other_clip_prob: float = 0.3
    min_shift: int = 5
    max_shift: int = 25
    flip: bool = True
    color_jitter: float = 0.1
    mel_noise: float = 0.0
    mel_band_mask: int = 0

    def __post_init__(self) -> None:
        if self.mel_norm not in ("none", "clip"):
            raise ValueError(f"data.mel_norm must be 'none' or 'clip', got {self.mel_norm!r}")
        if self.num_frames < 1 or self.resolution < 8:
            raise ValueError("data.num_frames must be >= 1 and data.resolution >= 8")


def read_manifest(dataset_dir: str | Path) -> list[ClipInfo]:
    """Clips with status ``ok`` of ``DATASET/manifest.json`` (raises FileNotFoundError with a hint)."""
    root = Path(dataset_dir)
    path = root / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `stylelipsync preprocess --output {root}` first")
    manifest = json.loads(path.read_text())
    return [
        ClipInfo(
            c["id"], str(c["person"]), int(c["num_frames"]), root / "clips" / c["id"], c.get("source", "")
        )
        for c in manifest["clips"]
        if c.get("status", "ok") == "ok"
    ]


def split_by_person(
    clips: list[ClipInfo],
    val_persons: list[str] | tuple[str, ...] | None = None,
    n_val: int = 2,
    seed: int = 0,
) -> tuple[list[ClipInfo], list[ClipInfo]]:
    """(train, val): all clips of ``val_persons`` (or of ``n_val`` persons drawn with ``seed``) go to val."""
    persons = sorted({c.person for c in clips})
    if val_persons:
        unknown = sorted(set(val_persons) - set(persons))
        if unknown:
            raise ValueError(f"validation person(s) not in the dataset: {', '.join(unknown)}")
        held = set(val_persons)
    else:
        if n_val >= len(persons) and n_val > 0:
            raise ValueError(f"cannot hold out {n_val} of {len(persons)} persons and still train")
        held = set(random.Random(seed).sample(persons, n_val)) if n_val > 0 else set()
    train = [c for c in clips if c.person not in held]
    val = [c for c in clips if c.person in held]
    return train, val


def split_dataset(config: DataConfig) -> tuple[list[ClipInfo], list[ClipInfo]]:
    """(train, val) clips of ``config.dataset``, split by person as ``config`` says."""
    return split_by_person(
        read_manifest(config.dataset), config.val_persons, config.n_val_persons, config.split_seed
    )


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float 0–255 → (3, H, W) in [−1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 127.5 - 1.0)


class ClipArrays:
    """Lazily memory-mapped arrays of one clip."""

    def __init__(self, clip: ClipInfo) -> None:
        self.clip = clip
        self._cache: dict[str, np.ndarray] = {}
        self._stats: tuple[np.ndarray, np.ndarray] | None = None
        self._opening: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"clip": self.clip, "_cache": {}, "_stats": self._stats, "_opening": self._opening}

    def array(self, name: str) -> np.ndarray:
        """``frames``, ``masks``, ``landmarks``, ``valid``, ``mel`` or ``audio`` (memory-mapped)."""
        if name not in self._cache:
            self._cache[name] = np.load(self.clip.path / f"{name}.npy", mmap_mode="r")
        return self._cache[name]

    @property
    def num_mel(self) -> int:
        return int(self.array("mel").shape[0])

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-band mel mean/std: from meta.json when preprocessing stored them, else computed once."""
        if self._stats is None:
            meta_path = self.clip.path / "meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            if "mel_mean" in meta and "mel_std" in meta:
                self._stats = (
                    np.asarray(meta["mel_mean"], np.float32),
                    np.asarray(meta["mel_std"], np.float32),
                )
            else:
                self._stats = mel_stats(np.asarray(self.array("mel")))
        return self._stats

    def mouth_opening(self) -> np.ndarray:
        """Per-frame mouth opening (inner-lip gap / eye distance), z-scored over the clip; NaN if invalid."""
        if self._opening is None:
            from stylelipsync.evaluation.mouth_opening import mouth_opening

            valid = np.asarray(self.array("valid"), dtype=bool)
            opening = mouth_opening(np.asarray(self.array("landmarks")), valid)
            finite = np.isfinite(opening)
            if finite.sum() > 1:
                opening = (opening - opening[finite].mean()) / max(float(opening[finite].std()), 1e-6)
            self._opening = opening.astype(np.float32)
        return self._opening

    def mel_window(self, centre: int) -> np.ndarray:
        """Spec window of frame ``centre``: mel rows [4c − 8, 4c + 12), zero rows outside (20, 80)."""
        mel = self.array("mel")
        start = MEL_PER_FRAME * centre - MEL_OFFSET
        out = np.zeros((MEL_WINDOW, mel.shape[1]), np.float32)
        lo, hi = max(0, start), min(mel.shape[0], start + MEL_WINDOW)
        if hi > lo:
            out[lo - start : hi - start] = mel[lo:hi]
        return out

    def centre_range(self) -> tuple[int, int]:
        """Frames whose mel window lies fully inside the audio: [lo, hi]."""
        lo = MEL_OFFSET // MEL_PER_FRAME
        hi = (self.num_mel - (MEL_WINDOW - MEL_OFFSET)) // MEL_PER_FRAME
        return lo, min(hi, self.clip.num_frames - 1)


def valid_starts(arrays: ClipArrays, num_frames: int, stride: int = 1) -> np.ndarray:
    """Starts t of ``num_frames`` consecutive face-valid frames whose mel windows are all inside the audio."""
    valid = np.asarray(arrays.array("valid"), dtype=bool)
    t_len = len(valid)
    if t_len < num_frames:
        return np.zeros(0, np.int64)
    run = np.convolve(valid.astype(np.int32), np.ones(num_frames, np.int32), mode="valid") == num_frames
    starts = np.flatnonzero(run)
    lo, hi = arrays.centre_range()
    starts = starts[(starts >= lo) & (starts + num_frames - 1 <= hi)]
    return starts[::stride].astype(np.int64)


def _unpack(key: int | SampleKey) -> tuple[int, int]:
    if isinstance(key, tuple | list):
        return int(key[0]), int(key[1])
    return int(key), sample_seed(0, 0, int(key))


class _ClipDatasetBase(Dataset[dict[str, Any]]):
    """Shared clip bookkeeping for the window and frame datasets."""

    def __init__(self, clips: list[ClipInfo], config: DataConfig, augment: bool) -> None:
        if not clips:
            raise ValueError("no clips: the dataset or this split is empty")
        self.clips = clips
        self.config = config
        self.augment = augment
        self.arrays = [ClipArrays(c) for c in clips]

    def _jitter(self, rng: np.random.Generator) -> tuple[bool, float, float]:
        cfg = self.config
        flip = bool(self.augment and cfg.flip and rng.random() < 0.5)
        if self.augment and cfg.color_jitter > 0:
            gain = float(1.0 + rng.uniform(-cfg.color_jitter, cfg.color_jitter))
            bias = float(rng.uniform(-cfg.color_jitter, cfg.color_jitter) * 127.5)
        else:
            gain, bias = 1.0, 0.0
        return flip, gain, bias

    @staticmethod
    def _apply(img: np.ndarray, flip: bool, gain: float, bias: float) -> np.ndarray:
        out = img.astype(np.float32)
        if gain != 1.0 or bias != 0.0:
            out = np.clip(out * gain + bias, 0.0, 255.0)
        return np.ascontiguousarray(out[:, ::-1]) if flip else out


class LipSyncWindowDataset(_ClipDatasetBase):
    """Windows of ``num_frames`` consecutive valid frames with everything the trainers need.

    Each item is a dict of tensors (T = ``num_frames``, R = ``resolution``):

    * ``frames`` (T, 3, R, R): ground truth Y in [−1, 1];
    * ``masked`` (T, 3, R, R): X = Y·K in [−1, 1] with the §3.3 keep-mask K; ``keep`` (T, 1, R, R) is K;
    * ``mouth`` (T, 1, R, R): 1 inside a box around the lips (landmarks), else the regenerated region;
    * ``mel`` (T, 20, 80): the spec windows of the T frames (raw log-mel); ``mel_mean``/``mel_std`` (80,):
      clip stats for per-clip normalisation (applied by the consumer);
    * ``ref`` (1, 3, R, R): an unmasked frame of the same clip, at least ``min_ref_distance`` frames away
      from the window when the clip allows;
    * ``sync_mel`` (20, 80) and ``sync_label``: the centre frame's window (label 1) or a wrong one (label 0):
      the same clip shifted by ``min_shift``…``max_shift`` frames, or (``other_clip_prob``) another clip;
    * ``reg_mel`` (T, 20, 80) with ``reg_mel_mean``/``reg_mel_std``: with an ``audio_pool``, T consecutive
      windows of another person's clip from the pool (the audio of adaptation's sync regulariser R_sync);
    * ``opening`` (T,): the frames' mouth opening from the landmarks, z-scored per clip (0 where unknown);
    * ``clip`` and ``start`` (ints).

    ``outputs`` selects the groups to compute: ``frames``, ``masked``, ``mouth``, ``ref``, ``sync``,
    ``opening``.
    """

    ALL_OUTPUTS = frozenset({"frames", "masked", "mouth", "ref", "sync", "opening"})

    def __init__(
        self,
        clips: list[ClipInfo],
        config: DataConfig,
        augment: bool = True,
        outputs: frozenset[str] | set[str] | None = None,
        audio_pool: list[ClipInfo] | None = None,
    ) -> None:
        super().__init__(clips, config, augment)
        self.pool = [ClipArrays(c) for c in audio_pool] if audio_pool else []
        self.outputs = frozenset(outputs) if outputs is not None else self.ALL_OUTPUTS
        unknown = self.outputs - self.ALL_OUTPUTS
        if unknown:
            raise ValueError(f"unknown outputs {sorted(unknown)}")
        per_clip = [valid_starts(a, config.num_frames, config.window_stride) for a in self.arrays]
        self.clip_index = np.concatenate([np.full(len(s), i, np.int64) for i, s in enumerate(per_clip)])
        self.starts = np.concatenate(per_clip) if per_clip else np.zeros(0, np.int64)
        if len(self.starts) == 0:
            raise ValueError(f"no window of {config.num_frames} valid frames in {len(clips)} clip(s)")
        self.per_clip = per_clip

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, seed = _unpack(key)
        rng = np.random.default_rng(seed)
        ci = int(self.clip_index[index])
        start = int(self.starts[index])
        arrays = self.arrays[ci]
        cfg = self.config
        t = cfg.num_frames
        flip, gain, bias = self._jitter(rng)
        mean, std = arrays.stats()
        mel = np.stack([self._augment_mel(arrays.mel_window(start + k), mean, rng) for k in range(t)])
        item: dict[str, Any] = {
            "clip": ci,
            "start": start,
            "mel": torch.from_numpy(mel),
            "mel_mean": torch.from_numpy(mean),
            "mel_std": torch.from_numpy(std),
        }
        if "frames" in self.outputs or "masked" in self.outputs:
            frames_raw = np.asarray(arrays.array("frames")[start : start + t])
            frames = [self._apply(f, flip, gain, bias) for f in frames_raw]
            item["frames"] = torch.stack([_to_tensor(_resize(f, cfg.resolution)) for f in frames])
        if "masked" in self.outputs or "mouth" in self.outputs:
            masks = np.asarray(arrays.array("masks")[start : start + t])
            keeps = [keep_mask(np.ascontiguousarray(m[:, ::-1]) if flip else m) for m in masks]
        if "masked" in self.outputs:
            item["masked"] = torch.stack(
                [
                    _to_tensor(_resize(f * k[..., None], cfg.resolution))
                    for f, k in zip(frames, keeps, strict=True)
                ]
            )
            item["keep"] = torch.stack([torch.from_numpy(_resize(k, cfg.resolution))[None] for k in keeps])
        if "mouth" in self.outputs:
            item["mouth"] = self._mouth(arrays, start, keeps, flip)
        if "ref" in self.outputs:
            r = self._reference(arrays, ci, start, rng)
            ref = self._apply(np.asarray(arrays.array("frames")[r]), flip, gain, bias)
            item["ref"] = _to_tensor(_resize(ref, cfg.resolution))[None]
        if "sync" in self.outputs:
            sync_mel, label, (s_mean, s_std) = self._sync_window(ci, start + t // 2, rng)
            item["sync_mel"] = torch.from_numpy(self._augment_mel(sync_mel, s_mean, rng))
            item["sync_label"] = torch.tensor(label, dtype=torch.float32)
            item["sync_mel_mean"], item["sync_mel_std"] = torch.from_numpy(s_mean), torch.from_numpy(s_std)
        if "opening" in self.outputs:
            opening = np.nan_to_num(arrays.mouth_opening()[start : start + t], nan=0.0)
            item["opening"] = torch.from_numpy(np.ascontiguousarray(opening, dtype=np.float32))
        if self.pool:
            pool = self.pool[self._pool_choice(ci, rng)]
            lo, hi = pool.centre_range()
            first = int(rng.integers(lo, max(lo, hi - t + 1) + 1))
            p_mean, p_std = pool.stats()
            item["reg_mel"] = torch.from_numpy(np.stack([pool.mel_window(first + k) for k in range(t)]))
            item["reg_mel_mean"], item["reg_mel_std"] = torch.from_numpy(p_mean), torch.from_numpy(p_std)
        return item

    def _pool_choice(self, ci: int, rng: np.random.Generator) -> int:
        """A pool clip of another person (another clip if the pool has only this person)."""
        clip = self.clips[ci]
        others = [k for k, a in enumerate(self.pool) if a.clip.person != clip.person]
        others = others or [k for k, a in enumerate(self.pool) if a.clip.id != clip.id] or [0]
        return others[int(rng.integers(len(others)))]

    def _augment_mel(self, window: np.ndarray, mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Training-only audio regularisation: Gaussian noise and one band set to the clip mean."""
        cfg = self.config
        if not self.augment or (cfg.mel_noise <= 0 and cfg.mel_band_mask <= 0):
            return window
        out = window.copy()
        if cfg.mel_noise > 0:
            out += rng.normal(0.0, cfg.mel_noise, out.shape).astype(np.float32)
        if cfg.mel_band_mask > 0:
            width = int(rng.integers(0, cfg.mel_band_mask + 1))
            if width:
                lo = int(rng.integers(0, out.shape[1] - width + 1))
                out[:, lo : lo + width] = mean[lo : lo + width]
        return out

    def _mouth(self, arrays: ClipArrays, start: int, keeps: list[np.ndarray], flip: bool) -> torch.Tensor:
        size = arrays.array("frames").shape[1]
        res = self.config.resolution
        lms = np.asarray(arrays.array("landmarks")[start : start + len(keeps)])
        out = []
        for lm, k in zip(lms, keeps, strict=True):
            pts = lm[list(LIPS_OUTER), :2]
            if np.all(np.isfinite(pts)):
                x0, y0 = pts.min(axis=0)
                x1, y1 = pts.max(axis=0)
                w, h = x1 - x0, y1 - y0
                x0, x1 = x0 - 0.3 * w, x1 + 0.3 * w
                y0, y1 = y0 - 0.5 * h - 2, y1 + 0.5 * h + 2
                if flip:
                    x0, x1 = size - x1, size - x0
                m = np.zeros((res, res), np.float32)
                s = res / size
                m[max(0, int(y0 * s)) : int(np.ceil(y1 * s)), max(0, int(x0 * s)) : int(np.ceil(x1 * s))] = (
                    1.0
                )
            else:
                m = 1.0 - _resize(k, res)
            out.append(torch.from_numpy(m)[None])
        return torch.stack(out)

    def _reference(self, arrays: ClipArrays, ci: int, start: int, rng: np.random.Generator) -> int:
        valid = np.flatnonzero(np.asarray(arrays.array("valid"), dtype=bool))
        centre = start + self.config.num_frames // 2
        far = valid[np.abs(valid - centre) >= self.config.min_ref_distance]
        if len(far) == 0:
            far = valid[(valid < start) | (valid >= start + self.config.num_frames)]
        if len(far) == 0:
            return centre
        return int(far[rng.integers(len(far))])

    def _sync_window(
        self, ci: int, centre: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, float, tuple[np.ndarray, np.ndarray]]:
        """(mel window, label, stats of the clip the window comes from) for the sync objective."""
        cfg = self.config
        arrays = self.arrays[ci]
        if rng.random() < cfg.positive_prob:
            return arrays.mel_window(centre), 1.0, arrays.stats()
        lo, hi = arrays.centre_range()
        cand = np.arange(lo, hi + 1)
        shift = np.abs(cand - centre)
        cand = cand[(shift >= cfg.min_shift) & ((cfg.max_shift <= 0) | (shift <= cfg.max_shift))]
        use_other = len(self.arrays) > 1 and (len(cand) == 0 or rng.random() < cfg.other_clip_prob)
        if use_other:
            others = [i for i, c in enumerate(self.clips) if c.person != self.clips[ci].person]
            others = others or [i for i in range(len(self.clips)) if i != ci]
            oi = others[int(rng.integers(len(others)))]
            o_arrays = self.arrays[oi]
            olo, ohi = o_arrays.centre_range()
            window = o_arrays.mel_window(int(rng.integers(olo, max(olo, ohi) + 1)))
            return window, 0.0, o_arrays.stats()
        if len(cand) == 0:
            return arrays.mel_window(centre), 1.0, arrays.stats()
        return arrays.mel_window(int(cand[rng.integers(len(cand))])), 0.0, arrays.stats()


class FrameDataset(_ClipDatasetBase):
    """Single valid frames (StyleGAN2 decoder): ``image`` (3, R, R) in [−1, 1], x-flip augmentation."""

    def __init__(self, clips: list[ClipInfo], config: DataConfig, augment: bool = True) -> None:
        super().__init__(clips, config, augment)
        idx = [np.flatnonzero(np.asarray(a.array("valid"), bool)) for a in self.arrays]
        self.clip_index = np.concatenate([np.full(len(s), i, np.int64) for i, s in enumerate(idx)])
        self.frame_index = np.concatenate(idx)
        if len(self.frame_index) == 0:
            raise ValueError("no valid frame in the dataset")

    def __len__(self) -> int:
        return len(self.frame_index)

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, seed = _unpack(key)
        rng = np.random.default_rng(seed)
        flip = bool(self.augment and self.config.flip and rng.random() < 0.5)
        img = np.asarray(
            self.arrays[int(self.clip_index[index])].array("frames")[int(self.frame_index[index])]
        )
        img = self._apply(img, flip, 1.0, 0.0)
        return {"image": _to_tensor(_resize(img, self.config.resolution))}
