"""The mouth-bank engine: bank building, selection, rendering, photo input, --bank-video, timing, errors.

Real shared clips, cut short; no model weights but the shipped audio → mouth-shape model and lip basis.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from stylelipsync.errors import FaceNotFoundError
from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.evaluation.mouth_opening import mouth_opening
from stylelipsync.face.track import track_face
from stylelipsync.media import VideoReader, VideoWriter, cut_clip, load_audio, probe
from stylelipsync.pipelines import LipSyncPipeline
from stylelipsync.pipelines.engines.bank import MouthBankEngine, ease_jumps, quantile_map
from stylelipsync.pipelines.engines.bank.bank import BankVideo, MouthBank
from stylelipsync.pipelines.engines.bank.collect import CropCollector, kept_frames, native_side
from stylelipsync.pipelines.engines.bank.select import SelectionCosts, cuts, select
from stylelipsync.pipelines.engines.bank.steady import CENTRE_POINTS, FrameMotion, steady_shifts
from stylelipsync.pipelines.engines.bank.warp import place, similarity, thin_plate

CLIP = "dreamtalk_M030_front_neutral_level1_001.mp4"  # 256², 25 fps, 94 frames, a man talking, no audio
OTHER_CLIP = "pcavs_Audio_Source_00104.mp4"  # 224², 25 fps, 12 s, another man talking, own audio
SPEECH = "sadtalker_answer.wav"  # 2.15 s of speech


def decode(path: Path) -> list[np.ndarray]:
    return [f.image for f in VideoReader(path)]


def laplacian_var(image: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


@pytest.fixture(scope="module")
def pipe() -> LipSyncPipeline:
    return LipSyncPipeline.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def clip(media_dir: Path) -> Path:
    return media_dir / CLIP


@pytest.fixture(scope="module")
def speech(media_dir: Path) -> Path:
    return media_dir / SPEECH


@pytest.fixture(scope="module")
def clip_bank(clip: Path) -> MouthBank:
    frames = decode(clip)
    collector = CropCollector(len(frames))
    track = track_face(iter(frames), fps=25.0, on_frame=collector)
    return MouthBank([BankVideo(collector, track)])


@pytest.fixture(scope="module")
def dubbed(pipe: LipSyncPipeline, clip: Path, speech: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("bank") / "dubbed.mp4"
    return pipe(clip, speech, out), out


# ------------------------------------------------------------------------------------------------ bank


def test_bank_keeps_every_tracked_frame_with_crops_landmarks_shapes_and_poses(
    clip_bank: MouthBank, clip: Path
) -> None:
    n = len(decode(clip))
    assert len(clip_bank) == n
    assert clip_bank.descriptor.shape == (n, 6) and np.isfinite(clip_bank.descriptor).all()
    assert np.isfinite(clip_bank.pose).all() and np.abs(clip_bank.pose).max() < 45
    assert clip_bank.follows[1:].all() and not clip_bank.follows[0]
    region = clip_bank.region(10)
    assert region.dtype == np.uint8 and region.shape == clip_bank.region(50).shape
    # The stored box is the lower face, pixel for pixel: the mouth and chin lie inside it, the eyes do not.
    lm = clip_bank.landmarks[10]
    h, w = region.shape[:2]
    assert 0 < lm[2, 1] < lm[13, 1] < lm[152, 1] < h and 0 < lm[61, 0] < lm[291, 0] < w
    assert lm[33, 1] < 0 and lm[263, 1] < 0
    frame = decode(clip)[int(clip_bank.source[10])]
    x0, y0 = -clip_bank.videos[0].collector.matrices[10][:, 2].astype(int)
    np.testing.assert_array_equal(region, frame[y0 : y0 + h, x0 : x0 + w])
    # A talking clip opens and closes its mouth: a real spread of openings, none negative.
    assert clip_bank.std[0] > 0.15 and clip_bank.descriptor[:, 0].min() >= 0
    assert not clip_bank.poor_coverage


def test_long_videos_keep_evenly_spread_runs_within_the_cap() -> None:
    keep = kept_frames(10_000, cap=3000, segment=25)
    assert keep.sum() <= 3000 and keep.sum() >= 2900
    starts = np.flatnonzero(np.diff(keep.astype(int)) == 1) + 1
    assert len(starts) > 50 and keep[:25].all() and keep[-25:].all()
    assert kept_frames(100, cap=3000).all()


def test_native_side_follows_the_face_size(clip: Path) -> None:
    track = track_video(clip)
    side = native_side(track.landmarks[0])
    assert side % 32 == 0 and 128 <= side <= 384
    big = track.landmarks[0].copy()
    big[:, :2] *= 3
    assert native_side(big) >= side


# -------------------------------------------------------------------------------------------- selection


def test_selection_finds_the_known_answer_of_a_synthetic_bank() -> None:
    rng = np.random.default_rng(0)
    n = 200
    shapes = np.cumsum(rng.normal(size=(n, 6)) * 0.3, axis=0)
    shapes = (shapes - shapes.mean(0)) / shapes.std(0)
    follows = np.ones(n, dtype=bool)
    follows[[0, 100]] = False  # two recordings of 100 frames
    truth = np.concatenate([np.arange(30, 60), np.arange(140, 170), np.arange(10, 25)])
    pose = np.zeros((n, 3))
    chosen = select(shapes[truth], np.zeros((len(truth), 3)), shapes, pose, follows, SelectionCosts())
    np.testing.assert_array_equal(chosen, truth)
    assert cuts(chosen, follows).sum() == 2


def test_selection_prefers_the_target_pose_and_plays_forward() -> None:
    n = 40
    shapes = np.zeros((n, 6))
    shapes[:, 0] = np.tile(np.linspace(-1, 1, 20), 2)
    pose = np.zeros((n, 3))
    pose[20:, 0] = 25.0  # second run filmed turned by 25°
    follows = np.ones(n, dtype=bool)
    follows[[0, 20]] = False
    target = shapes[:20]
    chosen = select(target, np.tile([25.0, 0, 0], (20, 1)), shapes, pose, follows)
    np.testing.assert_array_equal(chosen, np.arange(20, 40))


def _path_costs(
    paths: np.ndarray, unary: np.ndarray, follows: np.ndarray, costs: SelectionCosts, speech: np.ndarray
) -> np.ndarray:
    """(P,) total cost of each of the (P, T) paths by the rules of `select`'s docstring, step by step."""
    total = unary[0, paths[:, 0]].astype(np.float64)
    direction = np.zeros(len(paths))  # +1 playing forward, -1 backward, 0 none yet (start, after a jump)
    for t in range(1, paths.shape[1]):
        i, j = paths[:, t - 1], paths[:, t]
        freeze = j == i
        forward = (j == i + 1) & follows[j]
        backward = (j == i - 1) & follows[i]
        step = np.full(len(paths), costs.jump)
        step[freeze] = costs.freeze * speech[t]
        step[forward] = costs.forward + costs.turn * (direction[forward] == -1)
        step[backward] = costs.backward + costs.turn * (direction[backward] == 1)
        direction = np.where(forward, 1.0, np.where(backward, -1.0, np.where(freeze, direction, 0.0)))
        total += step + unary[t, j]
    return total


@pytest.mark.parametrize("turn", [0.0, 0.6, 1.2, 5.0])
def test_selection_with_a_turn_cost_finds_the_cheapest_path_of_all(turn: float) -> None:
    """Against every path of small problems: the two-direction dynamic programme is exact."""
    n, t_len = 5, 6
    follows = np.ones(n, dtype=bool)
    follows[[0, 3]] = False  # recordings of 3 and 2 frames
    speech = np.array([1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    costs = SelectionCosts(jump=1.5, turn=turn)
    paths = np.stack(np.meshgrid(*[np.arange(n)] * t_len, indexing="ij"), axis=-1).reshape(-1, t_len)
    for seed in range(60):
        rng = np.random.default_rng(seed)
        shapes = rng.normal(size=(n, 6))
        target = rng.normal(size=(t_len, 6)) * 0.5
        w = np.asarray(costs.shape_weights)
        unary = np.array([((shapes - target[t]) ** 2) @ w for t in range(t_len)])
        chosen = select(target, np.zeros((t_len, 3)), shapes, np.zeros((n, 3)), follows, costs, speech)
        best = _path_costs(paths, unary, follows, costs, speech).min()
        got = _path_costs(chosen[None, :], unary, follows, costs, speech)[0]
        assert got == pytest.approx(best), f"seed {seed}"


def test_turn_cost_stops_the_bank_playing_back_and_forth() -> None:
    """A wanted mouth that opens and closes by a little every two frames while it opens slowly, from one
    recording that opens steadily: without a turn cost the bank is rocked back and forth at every wobble;
    with it the bank plays in long runs and only follows the slow opening."""
    n = 60
    shapes = np.zeros((n, 6))
    shapes[:, 0] = np.linspace(-1.5, 1.5, n)
    follows = np.ones(n, dtype=bool)
    follows[0] = False
    target = shapes[30 + np.array([0, 1, 2, 1] * 10)] + np.linspace(0, 0.4, 40)[:, None] * [1, 0, 0, 0, 0, 0]
    pose = np.zeros((40, 3))

    def reversals(chosen: np.ndarray) -> int:
        steps = np.diff(chosen)
        moves = steps[np.abs(steps) == 1]
        return int((np.diff(moves) != 0).sum())

    rocking = select(target, pose, shapes, np.zeros((n, 3)), follows, SelectionCosts(turn=0.0))
    steady = select(target, pose, shapes, np.zeros((n, 3)), follows, SelectionCosts(turn=0.5))
    assert reversals(rocking) >= 15
    assert reversals(steady) <= 4
    assert cuts(steady, follows).sum() <= 1


def test_quantile_map_spans_the_reference_range_in_the_order_of_the_values() -> None:
    values = np.array([0.1, 0.3, 0.2, 0.05])
    ref = np.linspace(-2, 3, 101)
    mapped = quantile_map(values, ref)
    assert list(np.argsort(mapped)) == list(np.argsort(values))
    assert mapped.min() > -2 and mapped.max() < 3 and mapped.max() - mapped.min() > 2.5


# ------------------------------------------------------------------------------------------------- warp


def test_similarity_and_thin_plate_recover_known_motions() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, size=(12, 2))
    angle, scale, shift = 0.1, 1.3, np.array([5.0, -3.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + shift
    m = similarity(src, dst, np.ones(12))
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)
    field = thin_plate(src, np.tile([2.0, -1.0], (12, 1)), 128, smoothing=0.0)
    np.testing.assert_allclose(field, np.broadcast_to([2.0, -1.0], field.shape), atol=1e-6)


def test_placing_an_entry_on_itself_is_the_identity(clip_bank: MouthBank) -> None:
    lm = clip_bank.landmarks[5].astype(np.float64)
    size = 256
    placement = place(lm, lm, size)
    np.testing.assert_allclose(placement.matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    assert np.abs(placement.field).max() < 1e-6
    opened = place(lm, lm, size, open_px=6.0)
    assert opened.landmarks[14, 1] == pytest.approx(lm[14, 1] + 6.0)
    assert opened.landmarks[13, 1] == pytest.approx(lm[13, 1])


def test_a_shifted_placement_moves_the_mouth_centre_by_the_shift(clip_bank: MouthBank) -> None:
    bank_lm = clip_bank.landmarks[3].astype(np.float64)
    target_lm = clip_bank.landmarks[40].astype(np.float64)
    still = place(bank_lm, target_lm, 256)
    moved = place(bank_lm, target_lm, 256, shift=(1.5, -0.75))
    np.testing.assert_allclose(moved.centre - still.centre, [1.5, -0.75], atol=1e-9)
    np.testing.assert_allclose(
        moved.field - still.field, np.broadcast_to([1.5, -0.75], still.field.shape), atol=1e-5
    )
    # Opening the mouth leaves the upper lip (the centre) nearly where it was; on itself the centre is the
    # upper lip's own (no local fit moves it).
    assert np.linalg.norm(place(bank_lm, target_lm, 256, open_px=6.0).centre - still.centre) < 6.0 * 0.35
    own = place(bank_lm, bank_lm, 256).centre
    upper = [291, 409, 270, 269, 267, 0, 37, 39, 40, 185, 61]
    np.testing.assert_allclose(own, bank_lm[upper].mean(axis=0), atol=1e-6)


def test_cut_easing_turns_a_jump_of_the_mouth_into_a_smooth_move() -> None:
    # The mouth sits at 0 until frame 20, the new segment at -d from frame 20 (jump = old - new = d), another
    # cut at frame 24 jumps back by d/2: what is shown must move there smoothly and stay put elsewhere.
    t_len, d = 40, np.array([4.0, -2.0])
    base = np.zeros((t_len, 2))
    base[20:] -= d
    base[24:] += d / 2
    jump = np.zeros((t_len, 2))
    jump[20], jump[24] = d, -d / 2
    shown = base + ease_jumps(jump, 3)
    size = np.linalg.norm(d)
    step = np.linalg.norm(np.diff(shown, axis=0), axis=1)
    second = np.linalg.norm(shown[2:] - 2 * shown[1:-1] + shown[:-2], axis=1)
    assert step.max() <= 0.26 * 1.5 * size and second.max() <= 0.12 * 1.5 * size  # both cuts' bounds add
    np.testing.assert_allclose(shown[:16], 0.0)
    np.testing.assert_allclose(shown[28:], base[28:])
    # Without easing the same cuts step by the whole jump.
    assert np.linalg.norm(np.diff(base, axis=0), axis=1).max() == pytest.approx(size)


def test_steady_shifts_put_noisy_landmarks_where_the_image_moved(clip: Path) -> None:
    # A real frame moved along a known path (slow sway plus a sudden 3-pixel jerk of the head), with
    # landmarks that follow the path plus 0.8 px of detection noise per frame shared by all points: the
    # shifted landmarks must follow the path, jerk included, with a fraction of the noise.
    frame = decode(clip)[0]
    lm0 = track_face(iter([frame]), fps=25.0).raw[0].astype(np.float64)
    t_len = 60
    t = np.arange(t_len)
    path = np.stack([2.0 * np.sin(t / 9.0), 1.5 * np.cos(t / 13.0)], axis=1)
    path[30:, 0] += 3.0
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.8, size=(t_len, 2))
    collector = CropCollector(t_len)
    landmarks = np.repeat(lm0[None], t_len, axis=0)
    landmarks[:, :, :2] += (path + noise)[:, None, :]
    h, w = frame.shape[:2]
    for k in range(t_len):
        m = np.array([[1.0, 0.0, path[k, 0]], [0.0, 1.0, path[k, 1]]])
        moved = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        collector(k, moved, landmarks[k].astype(np.float32))
    try:
        shifts = steady_shifts(collector, landmarks)
        # The motion measured on the worker thread during collection is the one measured inline.
        inline = FrameMotion(threaded=False)
        for r, k in enumerate(collector.frames):
            inline.add(k, collector.store[r], landmarks[k, :, :2] + collector.matrices[r][:, 2])
        threaded = collector.motion.steps()
    finally:
        collector.close()
    assert sum(step is not None for step in threaded) >= t_len - 5
    for a, b in zip(threaded, inline.steps(), strict=True):
        assert (a is None and b is None) or np.array_equal(a, b)
    centre = landmarks[:, list(CENTRE_POINTS), :2].mean(axis=1) - lm0[list(CENTRE_POINTS), :2].mean(axis=0)
    before = np.linalg.norm(centre - path, axis=1)
    after = np.linalg.norm(centre + shifts - path, axis=1)
    assert np.sqrt((after**2).mean()) < 0.35 * np.sqrt((before**2).mean())
    assert after[28:33].max() < 0.45  # the jerk is followed, not smoothed away
    second = np.linalg.norm(np.diff(centre + shifts - path, n=2, axis=0), axis=1)
    assert np.median(second) < 0.35 * np.median(np.linalg.norm(np.diff(noise, n=2, axis=0), axis=1))


# ------------------------------------------------------------------------------------------- end to end


def test_bank_is_the_default_engine_and_the_output_plays_with_the_speech(dubbed, speech: Path) -> None:
    result, out = dubbed
    assert result.engine == "bank"
    info = probe(out)
    wave = load_audio(speech, 16000)
    assert abs(info.duration - len(wave) / 16000) < 0.1
    assert info.width == 256 and info.height == 256
    assert result.frames_with_face == result.frames
    assert result.details["bank_entries"] > 50


def test_dubbed_mouth_is_sharp_real_and_differs_from_the_input(dubbed, clip: Path) -> None:
    _, out = dubbed
    src, dub = decode(clip), decode(out)
    track = track_video(clip)
    changed, ratios = 0, []
    for t in range(5, len(dub) - 5, 5):
        lm = track.landmarks[t]
        x0, y0 = (lm[[61, 291, 0, 17], :2].min(0) - 6).astype(int)
        x1, y1 = (lm[[61, 291, 0, 17], :2].max(0) + 6).astype(int)
        a, b = src[t][y0:y1, x0:x1], dub[t][y0:y1, x0:x1]
        changed += int(np.abs(a.astype(int) - b).mean() > 3)
        ratios.append(laplacian_var(b) / max(laplacian_var(a), 1e-6))
        # The top of the frame (eyes and above) is the input's.
        np.testing.assert_allclose(dub[t][: int(lm[168, 1])].mean(), src[t][: int(lm[168, 1])].mean(), atol=3)
    assert changed >= len(ratios) // 2
    assert np.median(ratios) > 0.6


def test_mouth_follows_the_speech_and_closes_on_silence(
    pipe: LipSyncPipeline, clip: Path, speech: Path, tmp_path: Path
) -> None:
    wave = load_audio(speech, 16000)
    silence = np.zeros(16000, dtype=np.float32)
    audio = tmp_path / "speech_then_silence.wav"
    sf.write(str(audio), np.concatenate([wave, silence, wave]), 16000, subtype="PCM_16")
    out = tmp_path / "mixed.mp4"
    pipe(clip, audio, out)
    track = track_video(out)
    opening = mouth_opening(track.raw, track.detected)
    n = round(len(wave) / 16000 * 25)
    quiet = opening[n + 6 : n + 19]
    talk = np.concatenate([opening[:n], opening[n + 25 :]])
    assert np.nanstd(quiet) < 0.5 * np.nanstd(talk)
    assert np.nanmean(quiet) < np.nanmean(talk)


def test_audio_delayed_by_8_frames_delays_the_mouth_by_8_frames(
    pipe: LipSyncPipeline, media_dir: Path, tmp_path: Path
) -> None:
    wave = load_audio(media_dir / OTHER_CLIP, 16000)[: 16000 * 4]
    delayed = np.concatenate([np.zeros(16000 * 8 // 25, np.float32), wave])[: len(wave)]
    engine = pipe.engine("bank")
    assert isinstance(engine, MouthBankEngine)
    model = engine.shape_model
    a = model.predict(wave, 16000, 100, 25.0)[:, 0]
    b = model.predict(delayed, 16000, 100, 25.0)[:, 0]
    lags = range(-12, 13)
    corr = [np.corrcoef(a[20:80], b[20 + k : 80 + k])[0, 1] for k in lags]
    assert list(lags)[int(np.argmax(corr))] in (7, 8, 9)


def test_photo_input_opens_and_closes_sharp_lips(
    pipe: LipSyncPipeline, clip: Path, speech: Path, tmp_path: Path
) -> None:
    frame = decode(clip)[0]
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out = tmp_path / "photo.mp4"
    with pytest.warns(UserWarning, match="poor coverage"):
        result = pipe(photo, speech, out)
    assert result.warnings and "poor coverage" in result.warnings[0]
    track = track_video(out)
    opening = mouth_opening(track.raw, track.detected)
    assert np.nanmax(opening) - np.nanmin(opening) > 0.03
    assert result.details["reshaped_fraction"] > 0.3


def test_bank_video_gives_a_photo_real_mouths(
    pipe: LipSyncPipeline, clip: Path, speech: Path, tmp_path: Path
) -> None:
    """Enrolment: the photo's mouths come from the person's video, so far fewer frames need reshaping than
    with the photo alone (which reshapes every frame and warns)."""
    frame = decode(clip)[40]
    photo = tmp_path / "face.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    with pytest.warns(UserWarning, match="poor coverage"):
        alone = pipe(photo, speech, tmp_path / "alone.mp4")
    result = pipe(photo, speech, tmp_path / "enrolled.mp4", bank_video=[str(clip)])
    assert not result.warnings
    assert result.details["bank_entries"] > 50
    assert alone.details["reshaped_fraction"] > 0.9
    assert result.details["reshaped_fraction"] < 0.6 * alone.details["reshaped_fraction"]


def test_a_dub_renders_and_encodes_the_same_after_another_dub(
    pipe: LipSyncPipeline,
    clip: Path,
    speech: Path,
    media_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dubbing B, then A, then B again in one process gives B's frames and file twice, bit for bit.

    The rendered frames are compared before encoding (at the writer) and the files byte for byte: x264's
    AVX-512 MB-tree read memory it never wrote on this 224² clip, so B's second file differed from its
    first (`media.x264_cpu`)."""
    rendered: list[bytes] = []
    write = VideoWriter.write

    def recording(self: VideoWriter, image: np.ndarray) -> None:
        rendered.append(image.tobytes())
        write(self, image)

    monkeypatch.setattr(VideoWriter, "write", recording)
    other = cut_clip(media_dir / OTHER_CLIP, tmp_path / "other.mp4", 3.0)  # 224²: not a multiple of 128
    runs = []
    for k, video in enumerate([other, clip, other]):
        rendered.clear()
        out = tmp_path / f"{k}.mp4"
        pipe(video, speech, out)
        runs.append((list(rendered), hashlib.sha256(out.read_bytes()).hexdigest()))
    (frames_first, file_first), _, (frames_again, file_again) = runs
    assert len(frames_first) == 54
    assert [a == b for a, b in zip(frames_first, frames_again, strict=True)] == [True] * 54
    assert file_again == file_first


def test_no_face_is_a_clear_error(pipe: LipSyncPipeline, speech: Path, tmp_path: Path) -> None:
    video = tmp_path / "noise.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(video, 25, 128, 128) as w:
        for _ in range(10):
            w.write(rng.integers(0, 255, size=(128, 128, 3), dtype=np.uint8))
    with pytest.raises(FaceNotFoundError, match="no face"):
        pipe(video, speech, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


def test_tiny_face_is_a_clear_error(pipe: LipSyncPipeline, clip: Path, speech: Path, tmp_path: Path) -> None:
    frame = cv2.resize(decode(clip)[0], (24, 24), interpolation=cv2.INTER_AREA)
    canvas = np.full((240, 320, 3), 128, np.uint8)
    canvas[100:124, 150:174] = frame
    photo = tmp_path / "tiny.png"
    cv2.imwrite(str(photo), canvas)
    with pytest.raises(FaceNotFoundError, match="no face"):
        pipe(photo, speech, tmp_path / "out.mp4")


def test_one_frame_video_dubs_like_a_photo(
    pipe: LipSyncPipeline, clip: Path, speech: Path, tmp_path: Path
) -> None:
    video = tmp_path / "one.mp4"
    with VideoWriter(video, 25, 256, 256) as w:
        w.write(decode(clip)[0])
    out = tmp_path / "out.mp4"
    with pytest.warns(UserWarning, match="poor coverage"):
        result = pipe(video, speech, out)
    assert result.frames_with_face == result.frames and probe(out).duration > 2.0


def test_callback_and_crop_output_see_every_frame(
    pipe: LipSyncPipeline, clip: Path, speech: Path, tmp_path: Path
) -> None:
    seen: list[int] = []
    crops = tmp_path / "crops.mp4"
    result = pipe(
        clip, speech, tmp_path / "out.mp4", crop_output=crops, callback=lambda f: seen.append(f.index)
    )
    assert seen == list(range(result.frames))
    info = probe(crops)
    assert info.width == info.height and 128 <= info.width <= 256
    assert abs(info.duration - probe(tmp_path / "out.mp4").duration) < 0.1
