"""Face detection and 478-point landmarks with MediaPipe (BlazeFace full-range + refined FaceMesh).

BlazeFace finds every face in the frame; FaceMesh then runs on an enlarged, resampled crop around each face
and its points are mapped back to full-frame pixels. Cropping first is what makes small faces in big frames
work: FaceMesh sees the face at ~200 px whatever the frame size, and MediaPipe never has to resample a
1080×1920 frame without anti-aliasing. A frame without a face gives an empty list, never an exception.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from stylelipsync.face.landmarks import NUM_LANDMARKS

Box = NDArray[np.float32]
Landmarks = NDArray[np.float32]

# BlazeFace full-range takes a 192×192 letterboxed input; frames are first shrunk with area averaging to this
# long side so that the model's own (non-anti-aliased) resize has little left to do.
_DETECT_SIDE = 384
# FaceMesh input crop side (pixels) and the crop size relative to the face box it is centred on.
_MESH_SIDE = 320
_MESH_CROP_FROM_DETECTION = 2.0
_MESH_CROP_FROM_LANDMARKS = 1.7
_LAZY_MEDIAPIPE_MODULES = (
    "mediapipe.python.solutions.drawing_utils",
    "mediapipe.python.solutions.drawing_styles",
    "mediapipe.tasks",
    "mediapipe.tasks.python",
)
"""Parts of MediaPipe that its package __init__ imports but this project never uses (parents first)."""


def import_mediapipe() -> Any:
    """`import mediapipe`, with the modules it imports that the face detector never uses loaded lazily.

    MediaPipe's __init__ imports its drawing helpers (and with them matplotlib.pyplot) and its Tasks API: more
    than half its import time (1.6 of 2.4 s on 2 busy cores), paid before the first frame is tracked. They
    enter sys.modules unexecuted (`_insert_lazy`): whoever uses one (`mp.solutions.drawing_utils`, `mp.tasks`)
    gets the real module, executed on its first attribute access.
    """
    if "mediapipe" not in sys.modules:
        spec = importlib.util.find_spec("mediapipe")
        if spec is not None and spec.submodule_search_locations:
            root = Path(next(iter(spec.submodule_search_locations)))
            for name in _LAZY_MEDIAPIPE_MODULES:
                _insert_lazy(name, root)
    import mediapipe

    for name in _LAZY_MEDIAPIPE_MODULES:
        parent, _, child = name.rpartition(".")
        module, parent_module = sys.modules.get(name), sys.modules.get(parent)
        if module is not None and parent_module is not None and child not in vars(parent_module):
            setattr(parent_module, child, module)
    return mediapipe


def _insert_lazy(name: str, root: Path) -> None:
    """Put module `name` (a file or package under the mediapipe folder `root`) into sys.modules unexecuted,
    without importing its parent packages; a module `__getattr__` (PEP 562) executes it on the first access
    to an attribute it does not have yet. (`importlib.util.LazyLoader` would not do: the import statement
    itself reads the module's `__spec__`, which makes such a module execute at once.)"""
    folder = root.joinpath(*name.split(".")[1:-1])
    spec = importlib.machinery.PathFinder.find_spec(name, [str(folder)])
    if spec is None or spec.loader is None:
        return
    loader = spec.loader
    module = importlib.util.module_from_spec(spec)

    def load(attr: str) -> Any:
        del module.__dict__["__getattr__"]
        loader.exec_module(module)
        return getattr(module, attr)

    module.__dict__["__getattr__"] = load
    sys.modules[name] = module


@dataclass(frozen=True)
class Face:
    """One face: detector box (x0, y0, x1, y1) and score, and its landmarks (478, 3) in frame pixels.

    Landmark z is MediaPipe's relative depth (smaller = nearer the camera) in the same pixel scale as x.
    """

    box: Box
    score: float
    landmarks: Landmarks

    @property
    def area(self) -> float:
        """Box area in pixels²."""
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))


def landmark_box(landmarks: Landmarks) -> Box:
    """Tight (x0, y0, x1, y1) box around the x, y of a (N, ≥2) landmark array."""
    xy = landmarks[:, :2]
    return np.array([*xy.min(axis=0), *xy.max(axis=0)], dtype=np.float32)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _nms(boxes: list[Box], scores: list[float], iou: float = 0.3) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best score first."""
    keep: list[int] = []
    for i in np.argsort(scores)[::-1]:
        if all(box_iou(boxes[i], boxes[j]) < iou for j in keep):
            keep.append(int(i))
    return keep


def _rgb(frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
    return np.ascontiguousarray(frame)


def _square_crop(
    frame: NDArray[np.uint8], cx: float, cy: float, side: float, out: int
) -> NDArray[np.uint8] | None:
    """Axis-aligned square of `side` px centred on (cx, cy) resampled to out×out (black outside the frame).

    Downscaling goes through INTER_AREA first so that fine detail is averaged, not aliased.
    """
    h, w = frame.shape[:2]
    x0 = max(int(np.floor(cx - side / 2)) - 1, 0)
    y0 = max(int(np.floor(cy - side / 2)) - 1, 0)
    x1 = min(int(np.ceil(cx + side / 2)) + 2, w)
    y1 = min(int(np.ceil(cy + side / 2)) + 2, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    region = frame[y0:y1, x0:x1]
    s = out / side
    sx = sy = 1.0
    if s < 0.75:
        size = (max(2, round((x1 - x0) * s)), max(2, round((y1 - y0) * s)))
        region = np.asarray(cv2.resize(region, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
    # crop = s · (frame − c) + out/2 with frame = (x0, y0) + region / (sx, sy)
    m = np.array(
        [[s / sx, 0.0, s * (x0 - cx) + out / 2], [0.0, s / sy, s * (y0 - cy) + out / 2]], dtype=np.float64
    )
    return np.asarray(cv2.warpAffine(region, m, (out, out), flags=cv2.INTER_LINEAR), dtype=np.uint8)


class FaceDetector:
    """MediaPipe BlazeFace + FaceMesh (refined, 478 points); use as a context manager or close().

    `detect(frame)` returns every face with landmarks, largest first. `landmarks_near(frame, box)` runs
    FaceMesh only, on a crop around a known face (the cheap per-frame path of a tracker; `tracking=True` lets
    FaceMesh reuse the previous frame's result inside that crop instead of re-detecting).
    """

    def __init__(self, min_score: float = 0.5, max_faces: int = 8) -> None:
        mp = import_mediapipe()
        self.min_score = min_score
        self.max_faces = max_faces
        solutions: Any = mp.solutions
        self._blazeface = solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_score
        )
        self._blazeface_near = solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=min_score
        )
        self._mesh_static = solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=2, refine_landmarks=True, min_detection_confidence=min_score
        )
        self._mesh_video = solutions.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_score,
            min_tracking_confidence=0.5,
        )

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the MediaPipe graphs."""
        for graph in (self._blazeface, self._blazeface_near, self._mesh_static, self._mesh_video):
            graph.close()

    def detect_boxes(self, frame: NDArray[np.uint8]) -> list[tuple[Box, float]]:
        """BlazeFace boxes (x0, y0, x1, y1) and scores, best first, NMS-merged.

        The whole frame is searched with the full-range model first, then, if nothing was found, with the
        short-range model (faces filling the frame, which the full-range model misses). In a frame much longer
        than wide (or the reverse), overlapping square windows along the long side are searched last (small
        faces in portrait video).
        """
        frame = _rgb(frame)
        h, w = frame.shape[:2]
        boxes, scores = self._detect_window(frame, 0, 0, w, h)
        if not boxes:
            boxes, scores = self._detect_window(frame, 0, 0, w, h, near=True)
        if not boxes and max(h, w) > 1.3 * min(h, w):
            side = min(h, w)
            long_side = max(h, w)
            n = int(np.ceil(2 * long_side / side)) - 1
            for start in np.linspace(0, long_side - side, max(n, 2)):
                x0, y0 = (int(start), 0) if w > h else (0, int(start))
                b, s = self._detect_window(frame, x0, y0, side, side)
                boxes += b
                scores += s
        keep = _nms(boxes, scores)[: self.max_faces]
        return [(boxes[i], scores[i]) for i in keep]

    def _detect_window(
        self, frame: NDArray[np.uint8], x0: int, y0: int, w: int, h: int, near: bool = False
    ) -> tuple[list[Box], list[float]]:
        window = frame[y0 : y0 + h, x0 : x0 + w]
        scale = min(1.0, _DETECT_SIDE / max(h, w))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            window = np.asarray(cv2.resize(window, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        model = self._blazeface_near if near else self._blazeface
        result = model.process(np.ascontiguousarray(window))
        boxes: list[Box] = []
        scores: list[float] = []
        for det in result.detections or []:
            rb = det.location_data.relative_bounding_box
            bx0, by0 = x0 + rb.xmin * w, y0 + rb.ymin * h
            box = np.array([bx0, by0, bx0 + rb.width * w, by0 + rb.height * h], dtype=np.float32)
            if box[2] - box[0] >= 8 and box[3] - box[1] >= 8:
                boxes.append(box)
                scores.append(float(det.score[0]))
        return boxes, scores

    def landmarks_near(
        self, frame: NDArray[np.uint8], box: Box, *, tracking: bool = False, from_landmarks: bool = False
    ) -> Landmarks | None:
        """FaceMesh on a square crop centred on `box`; (478, 3) float32 frame-pixel landmarks or None.

        `box` is a detector box (crop = 2× its size) or, with `from_landmarks`, a landmark box (crop = 1.7×).
        When the crop holds two faces, the one nearest the crop centre is returned.
        """
        frame = _rgb(frame)
        factor = _MESH_CROP_FROM_LANDMARKS if from_landmarks else _MESH_CROP_FROM_DETECTION
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = factor * max(box[2] - box[0], box[3] - box[1])
        if not np.isfinite(side) or side < 8:
            return None
        crop = _square_crop(frame, cx, cy, side, _MESH_SIDE)
        if crop is None:
            return None
        s = _MESH_SIDE / side
        mesh = self._mesh_video if tracking else self._mesh_static
        result = mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        best: NDArray[np.float32] | None = None
        best_dist = np.inf
        for face in result.multi_face_landmarks:
            pts = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32) * _MESH_SIDE
            if pts.shape[0] != NUM_LANDMARKS:
                continue
            dist = float(np.linalg.norm(pts[:, :2].mean(axis=0) - _MESH_SIDE / 2))
            if dist < best_dist:
                best, best_dist = pts, dist
        if best is None:
            return None
        out = np.empty_like(best)
        out[:, 0] = (best[:, 0] - _MESH_SIDE / 2) / s + cx
        out[:, 1] = (best[:, 1] - _MESH_SIDE / 2) / s + cy
        out[:, 2] = best[:, 2] / s
        return out

    def detect(self, frame: NDArray[np.uint8]) -> list[Face]:
        """Every face that both BlazeFace and FaceMesh confirm, largest box first; [] when there is none."""
        faces: list[Face] = []
        for box, score in self.detect_boxes(frame):
            landmarks = self.landmarks_near(frame, box)
            if landmarks is not None and box_iou(landmark_box(landmarks), box) > 0.2:
                faces.append(Face(box=box, score=score, landmarks=landmarks))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
