"""LSE-D / LSE-C protocol: MFCC, window quirk, zero-padded offset search, scores, crop, weights, e2e."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stylelipsync.errors import CheckpointError
from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.evaluation.lse import (
    PAD_VALUE,
    embed_windows,
    last_frame,
    lrs_frames,
    lse_score,
    mfcc,
    offset_distances,
    protocol_crop,
    protocol_wave,
    score_distances,
    wild_frames,
)
from stylelipsync.evaluation.runner import EvalConfig, Evaluator, Job
from stylelipsync.evaluation.syncnet_v2 import SyncNetV2, load_syncnet_v2
from stylelipsync.media import VideoReader, load_audio

SHORT_CLIP = "deepavsr_00006.mp4"  # 0.9 s, 160² LRS2 face crop with its own audio

# A sample of syncnet_python's `syncnet_v2.model` keys with their shapes (nn.Sequential indices included).
OFFICIAL_KEYS = {
    "netcnnaud.0.weight": (64, 1, 3, 3),
    "netcnnaud.1.running_var": (64,),
    "netcnnaud.4.weight": (192, 64, 3, 3),
    "netcnnaud.8.weight": (384, 192, 3, 3),
    "netcnnaud.11.weight": (256, 384, 3, 3),
    "netcnnaud.14.weight": (256, 256, 3, 3),
    "netcnnaud.18.weight": (512, 256, 5, 4),
    "netcnnaud.19.bias": (512,),
    "netfcaud.0.weight": (512, 512),
    "netfcaud.1.running_mean": (512,),
    "netfcaud.3.weight": (1024, 512),
    "netfclip.3.bias": (1024,),
    "netcnnlip.0.weight": (96, 3, 5, 7, 7),
    "netcnnlip.4.weight": (256, 96, 1, 5, 5),
    "netcnnlip.8.weight": (256, 256, 1, 3, 3),
    "netcnnlip.11.weight": (256, 256, 1, 3, 3),
    "netcnnlip.14.weight": (256, 256, 1, 3, 3),
    "netcnnlip.18.weight": (512, 256, 1, 6, 6),
    "netcnnlip.19.running_var": (512,),
}


def test_mfcc_shape_and_rate() -> None:
    rng = np.random.default_rng(0)
    for seconds in (1, 2):
        wave = rng.normal(scale=0.1, size=16000 * seconds).astype(np.float32)
        out = mfcc(protocol_wave(wave))
        # python_speech_features: 1 + ceil((N − 400) / 160) frames of 13 coefficients → 100 per second.
        assert out.shape == (13, 1 + int(np.ceil((16000 * seconds - 400) / 160)))
        assert out.dtype == np.float32
    frames = 7
    assert mfcc(protocol_wave(rng.normal(scale=0.1, size=640 * frames))).shape[1] == 4 * frames - 1


def test_protocol_wave_is_int16_scale() -> None:
    out = protocol_wave(np.array([0.0, 0.5, -1.0, 1.0]))
    np.testing.assert_array_equal(out, [0, 16384, -32768, 32767])


def test_last_frame_quirk() -> None:
    assert last_frame(100, 100 * 640) == 95  # windows 0..94; the possible window 95 is dropped
    assert last_frame(100, 50 * 640 + 639) == 45  # the audio limits: floor(samples / 640) = 50
    assert last_frame(5, 5 * 640) == 0
    assert last_frame(3, 10**6) == 0


class _FakeSyncNet(torch.nn.Module):
    """Embeds a window as (first frame's mean pixel, window start from the MFCC's first value)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.lip_calls: list[int] = []

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        self.lip_calls.append(len(x))
        return x[:, :, 0].mean(dim=(1, 2, 3))[:, None].repeat(1, 2)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, :1].repeat(1, 2)


def test_embed_windows_order_batches_and_frame_budget() -> None:
    frames_read = []

    def frames(n: int):
        for t in range(n):
            frames_read.append(t)
            yield np.full((224, 224, 3), t, dtype=np.uint8)

    coeffs = np.tile(np.repeat(np.arange(60, dtype=np.float32), 4)[None], (13, 1))  # column 4t holds t
    windows = last_frame(50, 50 * 640)  # 45
    model = _FakeSyncNet()
    video, audio = embed_windows(model, frames(50), coeffs, windows, batch_size=20)  # type: ignore[arg-type]
    assert video.shape == (45, 2) and audio.shape == (45, 2)
    np.testing.assert_array_equal(video[:, 0].numpy(), np.arange(45))
    np.testing.assert_array_equal(audio[:, 0].numpy(), np.arange(45))
    assert model.lip_calls == [20, 20, 5]
    assert max(frames_read) == 45 + 5 - 2  # frames 0..48 are enough; frame 49 is never needed
    again, _ = embed_windows(_FakeSyncNet(), frames(50), coeffs, windows, batch_size=7)  # type: ignore[arg-type]
    torch.testing.assert_close(again, video)


def test_offset_distances_zero_padding_hand_computed() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    d = offset_distances(a.clone(), a, vshift=1)
    r2 = float(np.sqrt(2))
    # Row t, column k compares video t with audio t + k − 1; audio −1 and 3 are the zero padding.
    expected = torch.tensor([[1.0, 0.0, r2], [r2, 0.0, 1.0], [1.0, 0.0, r2]])
    torch.testing.assert_close(d, expected, atol=1e-5, rtol=0)


def test_scores_median_minus_min_and_offset() -> None:
    mean = torch.arange(31, dtype=torch.float32).flip(0) * 0.1 + 5.0  # decreasing: 8.0 … 5.0
    mean[18] = 2.0  # best offset index 18
    dists = mean[None].repeat(4, 1)
    s = score_distances(dists)
    assert s.lse_d == pytest.approx(2.0)
    assert s.lse_c == pytest.approx(float(torch.median(mean)) - 2.0)
    assert s.av_offset == 15 - 18
    assert s.windows == 4 and s.mean_dist.shape == (31,)


def test_offset_search_finds_known_shift() -> None:
    rng = np.random.default_rng(1)
    audio = torch.from_numpy(rng.normal(size=(80, 16)).astype(np.float32))
    shift = 3  # video window t matches audio t + 3 (the audio is 3 frames late)
    noise = torch.from_numpy(rng.normal(size=(80, 16)).astype(np.float32))
    video = torch.roll(audio, -shift, dims=0) + 0.1 * noise
    s = score_distances(offset_distances(video, audio))
    assert s.av_offset == -shift
    assert s.lse_c > 1.0
    assert int(np.argmin(s.mean_dist)) == 15 + shift
    assert s.frame_conf.shape == (80,)


def _literal_crop(image: np.ndarray, s: float, cx: float, cy: float, cs: float = 0.4) -> np.ndarray:
    """run_pipeline.py as written: pad the whole frame with 110, then slice (before the resize)."""
    bsi = int(s * (1 + 2 * cs))
    frame = np.pad(image, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=(110, 110))
    my, mx = cy + bsi, cx + bsi
    return frame[int(my - s) : int(my + s * (1 + 2 * cs)), int(mx - s * (1 + cs)) : int(mx + s * (1 + cs))]


@pytest.mark.parametrize(("s", "cx", "cy"), [(20.0, 50.0, 50.0), (30.5, 10.2, 85.7), (44.0, 95.0, 5.0)])
def test_protocol_crop_matches_literal_padding(s: float, cx: float, cy: float) -> None:
    import cv2

    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, size=(100, 120, 3), dtype=np.uint8)
    expected = cv2.resize(_literal_crop(image, s, cx, cy), (224, 224))
    np.testing.assert_array_equal(protocol_crop(image, s, cx, cy), expected)
    if cy < 10:
        assert (protocol_crop(image, s, cx, cy)[0] == PAD_VALUE).all()


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = SyncNetV2()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    # Old checkpoints (torch < 0.4.1) have no BatchNorm counters.
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def test_weights_load_strictly_with_official_key_names(tmp_path: Path) -> None:
    state = _random_state()
    for key, shape in OFFICIAL_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path, _use_new_zipfile_serialization=False)  # legacy format, like the 2018 file
    model = load_syncnet_v2(path)
    assert not model.training
    for key, value in state.items():
        torch.testing.assert_close(model.state_dict()[key], value)

    extra = dict(state, **{"netcnnaud.99.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.model")
    with pytest.raises(CheckpointError, match="layout"):
        load_syncnet_v2(tmp_path / "extra.model")
    missing = {k: v for k, v in state.items() if k != "netfclip.3.weight"}
    torch.save(missing, tmp_path / "missing.model")
    with pytest.raises(CheckpointError, match=r"netfclip\.3\.weight"):
        load_syncnet_v2(tmp_path / "missing.model")
    with pytest.raises(CheckpointError, match=r"syncnet_v2\.model"):
        load_syncnet_v2(tmp_path / "absent.model")


def test_without_weights_lse_is_unavailable_not_faked(media_dir: Path) -> None:
    evaluator = Evaluator(EvalConfig(metrics=("lse",)))
    assert "syncnet_v2.model" in evaluator.unavailable["lse"]
    result = evaluator.evaluate(Job("x", media_dir / SHORT_CLIP))
    assert "lse_d" not in result.values and "lse_c" not in result.values


@pytest.fixture(scope="module")
def random_syncnet(tmp_path_factory: pytest.TempPathFactory) -> SyncNetV2:
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(_random_state(3), path)
    return load_syncnet_v2(path)


@pytest.mark.parametrize("mode", ["lrs", "wild"])
def test_end_to_end_on_shared_clip_with_random_weights(
    media_dir: Path, random_syncnet: SyncNetV2, mode: str, tmp_path: Path
) -> None:
    clip = media_dir / SHORT_CLIP
    score = lse_score(random_syncnet, clip, mode=mode, cache_dir=tmp_path)  # type: ignore[arg-type]
    frames = len(VideoReader(clip, fps=25))
    assert score.windows == last_frame(frames, len(load_audio(clip, 16000)))
    assert score.windows > 10
    assert score.mean_dist.shape == (31,) and np.isfinite(score.mean_dist).all()
    # The scores are those of syncnet_python's loop, recomputed here window by window from the clip's own
    # frames and audio: a wrong audio track, a frame or MFCC block off by one, or a wrong distance all fail.
    if mode == "lrs":
        frames = list(lrs_frames(clip, True))
    else:
        frames = list(wild_frames(clip, track_video(clip, fps=25, cache_dir=tmp_path)))
    coeffs = torch.from_numpy(mfcc(protocol_wave(load_audio(clip, 16000))))
    with torch.no_grad():
        lips = torch.stack([torch.from_numpy(np.stack(frames[v : v + 5])).permute(3, 0, 1, 2).float()
                            for v in range(score.windows)])  # fmt: skip
        video_feat = random_syncnet.forward_lip(lips).numpy()
        blocks = torch.stack([coeffs[:, 4 * v : 4 * v + 20] for v in range(score.windows)])[:, None]
        audio_feat = random_syncnet.forward_aud(blocks.float()).numpy()
    padded = np.pad(audio_feat, ((15, 15), (0, 0)))
    dists = np.stack([np.linalg.norm(video_feat[t] - padded[t : t + 31] + 1e-6, axis=1)
                      for t in range(score.windows)])  # fmt: skip
    mean_dist = dists.mean(axis=0)
    np.testing.assert_allclose(score.mean_dist, mean_dist, rtol=1e-4)
    assert score.lse_d == pytest.approx(mean_dist.min(), rel=1e-4)
    assert score.lse_c == pytest.approx(np.median(mean_dist) - mean_dist.min(), rel=1e-3, abs=1e-5)
    assert score.av_offset == 15 - int(mean_dist.argmin())
    assert score.mode == mode and score.frame_conf.shape == (score.windows,)
