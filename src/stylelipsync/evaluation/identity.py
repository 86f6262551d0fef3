"""CSIM: cosine similarity of face-identity embeddings between generated and source frames.

Two embedders, reported under different names because their values are not comparable:

* ``csim_arcface`` — ArcFace (insightface `arcface_torch` IResNet-50/100, 512-d), the network papers use.
  The architecture is written here with insightface's parameter names; the weights (e.g. `backbone.pth` of
  glint360k/ms1mv3 r100) are given by path. Faces are aligned to the standard 112 × 112 ArcFace 5-point
  template from MediaPipe landmarks (eye centres, nose tip, mouth corners).
* ``csim_dlib`` — offline default: dlib's face-recognition ResNet (128-d) shipped by the
  `face_recognition_models` package, with its 5-point shape predictor placed in a box derived from the
  MediaPipe landmarks (cheek to cheek, eyebrows to chin, close to dlib's own detector boxes).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from torch import nn

from stylelipsync.errors import CheckpointError
from stylelipsync.face.landmarks import CHIN, LEFT_EYE, PRONASALE, RIGHT_EYE

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
MOUTH_CORNERS = (61, 291)
CHEEKS = (234, 454)
EYEBROWS = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)
ARCH_LAYERS = {"r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3)}
ARCFACE_HELP = (
    "ArcFace CSIM needs an insightface arcface_torch IResNet state dict (e.g. ms1mv3_arcface_r100 "
    "backbone.pth); pass --arcface-weights PATH (and --arcface-arch r50 for a ResNet-50)."
)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) image-left eye, image-right eye, nose tip, image-left and image-right mouth corners."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    return np.stack(
        [lm[list(RIGHT_EYE)].mean(axis=0), lm[list(LEFT_EYE)].mean(axis=0), lm[PRONASALE],
         lm[MOUTH_CORNERS[0]], lm[MOUTH_CORNERS[1]]]
    )  # fmt: skip


def arcface_crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """112 × 112 RGB face aligned to the ArcFace template by a similarity transform."""
    matrix, _ = cv2.estimateAffinePartial2D(five_points(landmarks), ARCFACE_TEMPLATE, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("could not fit the ArcFace alignment to the landmarks")
    return cv2.warpAffine(image, matrix, (112, 112), borderValue=(0.0, 0.0, 0.0))


class IBasicBlock(nn.Module):
    """IResNet residual unit: BN, conv3×3, BN, PReLU, conv3×3 (stride), BN, plus the (projected) input."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """ArcFace backbone: 112² RGB in [−1, 1] → 512-d embedding (insightface arcface_torch layout)."""

    def __init__(self, layers: tuple[int, int, int, int], num_features: int = 512) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(256, layers[2])
        self.layer4 = self._make_layer(512, layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(
            nn.Conv2d(self.inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, eps=1e-5)
        )
        layers: list[nn.Module] = [IBasicBlock(self.inplanes, planes, 2, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def load_arcface(path: str | Path, arch: Literal["r50", "r100"] = "r100") -> IResNet:
    """IResNet in eval mode with a state dict read by `torch.load(weights_only=True)` (strict)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"ArcFace weights not found at {p}. {ARCFACE_HELP}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{p}: cannot be read as a PyTorch state dict ({exc}). {ARCFACE_HELP}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for key in [k for k in state if k.endswith(".running_mean")]:
        state.setdefault(key.removesuffix("running_mean") + "num_batches_tracked", torch.tensor(0))
    model = IResNet(ARCH_LAYERS[arch])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{p}: does not match IResNet-{arch[1:]}: {exc}") from exc
    return model.eval()


class ArcFaceEmbedder:
    """512-d L2-normalised ArcFace embedding of the face given by MediaPipe landmarks."""

    name = "csim_arcface"

    def __init__(self, model: IResNet) -> None:
        self.model = model.eval()

    @torch.inference_mode()
    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Embedding of the RGB uint8 `image`'s face with (478, 2|3) `landmarks`."""
        crop = arcface_crop(image, landmarks).astype(np.float32)
        x = torch.from_numpy((crop / 255.0 - 0.5) / 0.5).permute(2, 0, 1)[None]
        out = self.model(x)[0].numpy().astype(np.float64)
        return out / max(np.linalg.norm(out), 1e-12)


def dlib_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """Face box like dlib's detector's from MediaPipe landmarks: cheek to cheek, eyebrows to chin."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    x0, x1 = sorted((lm[CHEEKS[0], 0], lm[CHEEKS[1], 0]))
    y0, y1 = lm[list(EYEBROWS), 1].min(), lm[CHIN, 1]
    return round(x0), round(y0), round(x1), round(y1)


class DlibEmbedder:
    """128-d dlib face-recognition ResNet descriptor (weights from the `face_recognition_models` package)."""

    name = "csim_dlib"

    def __init__(self) -> None:
        import dlib

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # face_recognition_models imports the deprecated pkg_resources
            import face_recognition_models as frm

        self._dlib = dlib
        self.shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Descriptor of the RGB uint8 `image`'s face located by `landmarks`."""
        rgb = np.ascontiguousarray(image)
        rect = self._dlib.rectangle(*dlib_box(landmarks))
        shape = self.shape(rgb, rect)
        return np.asarray(self.net.compute_face_descriptor(rgb, shape), dtype=np.float64)
