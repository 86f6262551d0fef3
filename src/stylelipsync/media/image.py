"""Still images: recognise them by suffix and read them as upright RGB arrays."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stylelipsync.errors import MediaError
from stylelipsync.formats import IMAGE_SUFFIXES
from stylelipsync.media.container import check_file


def is_image_path(path: str | Path) -> bool:
    """True if `path` has a still-image suffix (jpg, jpeg, png, webp, bmp; case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """Read a still image as an HxWx3 uint8 RGB array, upright according to its EXIF orientation.

    OpenCV applies all eight EXIF orientations (rotations and mirrors) when decoding. Alpha is dropped and
    grey or 16-bit images are converted to 8-bit RGB, which is what the face pipeline consumes.
    """
    p = check_file(path)
    try:
        data = np.frombuffer(p.read_bytes(), dtype=np.uint8)
    except PermissionError as exc:
        raise MediaError(f"{p}: permission denied. Make the file readable.") from exc
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise MediaError(
            f"{p}: not a readable image (damaged, truncated or unsupported). Use a jpg, png, webp or bmp."
        )
    return np.ascontiguousarray(bgr[:, :, ::-1])
