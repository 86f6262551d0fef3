"""FaceDetector on real clips: talking clips, a small face in 1080×1920, several faces, no face."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stylelipsync.face.detect import FaceDetector, box_iou, landmark_box
from stylelipsync.face.landmarks import LEFT_EYE_OUTER, NUM_LANDMARKS, RIGHT_EYE_OUTER
from test_face_common import FACELESS_CLIP, MULTI_FACE_CLIP, SMALL_FACE_CLIP, TALKING, read_frames


@pytest.fixture(scope="module")
def detector() -> Iterator[FaceDetector]:
    with FaceDetector() as det:
        yield det


def _check_face(frame: np.ndarray, faces: list) -> None:
    assert len(faces) == 1, f"expected one face, got {len(faces)}"
    face = faces[0]
    lm = face.landmarks
    assert lm.shape == (NUM_LANDMARKS, 3) and lm.dtype == np.float32
    assert np.isfinite(lm).all()
    h, w = frame.shape[:2]
    assert (lm[:, 0] > -0.05 * w).all() and (lm[:, 0] < 1.05 * w).all()
    assert (lm[:, 1] > -0.05 * h).all() and (lm[:, 1] < 1.05 * h).all()
    assert box_iou(landmark_box(lm), face.box) > 0.3
    # The subject's right eye is on the image left; irises sit between the eye corners.
    assert lm[RIGHT_EYE_OUTER, 0] < lm[LEFT_EYE_OUTER, 0]
    assert lm[RIGHT_EYE_OUTER, 0] < lm[468, 0] < lm[473, 0] < lm[LEFT_EYE_OUTER, 0]


@pytest.mark.parametrize("name", [SMALL_FACE_CLIP, "sadtalker_WDA_KatieHill_000.mp4"])
def test_detects_on_every_frame(media_dir: Path, detector: FaceDetector, name: str) -> None:
    frames = read_frames(media_dir, name, TALKING[name])
    for frame in frames:
        _check_face(frame, detector.detect(frame))


def test_small_face_in_portrait_frame(media_dir: Path, detector: FaceDetector) -> None:
    frame = read_frames(media_dir, SMALL_FACE_CLIP, TALKING[SMALL_FACE_CLIP])[0]
    assert frame.shape == (1920, 1080, 3)
    (face,) = detector.detect(frame)
    width = face.box[2] - face.box[0]
    assert width < 0.25 * frame.shape[1], "this clip's face is small: the test must exercise that case"


@pytest.mark.parametrize(
    "name", [n for n in TALKING if n not in (SMALL_FACE_CLIP, "sadtalker_WDA_KatieHill_000.mp4")]
)
def test_detects_on_sampled_frames(media_dir: Path, detector: FaceDetector, name: str) -> None:
    for frame in read_frames(media_dir, name, TALKING[name])[::10]:
        _check_face(frame, detector.detect(frame))


def test_several_faces_sorted_by_area(media_dir: Path, detector: FaceDetector) -> None:
    frame = read_frames(media_dir, MULTI_FACE_CLIP, 1, start=600)[0]
    faces = detector.detect(frame)
    assert len(faces) == 3
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    for i in range(3):
        for j in range(i + 1, 3):
            assert box_iou(faces[i].box, faces[j].box) == 0.0
            assert box_iou(landmark_box(faces[i].landmarks), landmark_box(faces[j].landmarks)) == 0.0


def test_no_face_gives_empty_list(media_dir: Path, detector: FaceDetector) -> None:
    drawn = read_frames(media_dir, FACELESS_CLIP, 100)[::10]
    for frame in drawn:
        assert detector.detect(frame) == []
    assert detector.detect(np.zeros((720, 1280, 3), np.uint8)) == []
    assert detector.detect(np.full((1920, 1080, 3), 200, np.uint8)) == []
    assert detector.detect(np.zeros((4, 4, 3), np.uint8)) == []


def test_rejects_non_rgb(detector: FaceDetector) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(np.zeros((64, 64), np.uint8))
