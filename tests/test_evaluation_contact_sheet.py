"""Contact sheets (evaluation/contact_sheet.py): layout, looped-input timeline, mouth zoom, photo input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stylelipsync.evaluation.contact_sheet import GAP, contact_sheet, sample_times, write_contact_sheet
from stylelipsync.face.track import FaceTrack
from stylelipsync.media import VideoWriter

W, H = 64, 48
MOUTH = (32, 34)  # centre of the synthetic lips, pixels


def _frame(grey: int) -> np.ndarray:
    """Flat grey frame with a white 12 × 8 patch where the mouth is."""
    image = np.full((H, W, 3), grey, np.uint8)
    image[MOUTH[1] - 4 : MOUTH[1] + 4, MOUTH[0] - 6 : MOUTH[0] + 6] = 255
    return image


def _video(path: Path, greys: list[int]) -> Path:
    with VideoWriter(path, 25, W, H) as writer:
        for g in greys:
            writer.write(_frame(g))
    return path


def _track(frames: int) -> FaceTrack:
    lm = np.zeros((frames, 478, 3), np.float32)
    lm[:, :, :2] = MOUTH  # every point (lips included) at the mouth centre ...
    lm[:, 33, :2], lm[:, 263, :2] = (20, 15), (44, 15)  # ... but the eye corners, 24 px apart
    return FaceTrack(lm, lm.copy(), np.ones(frames, bool), np.ones(frames, bool), 25.0, (W, H))


def _tile(sheet: np.ndarray, row: int, col: int, tile_h: int, zoom_h: int, rows: int) -> np.ndarray:
    """Tile (row, col); rows ≥ `rows` are the zoomed part (height zoom_h), the lower-right quarter only."""
    y = GAP + sum((tile_h if r < rows else zoom_h) + GAP for r in range(row))
    h = tile_h if row < rows else zoom_h
    x = GAP + col * (W + GAP)
    return sheet[y + h // 2 : y + h, x + W // 2 : x + W]


def _white(tile: np.ndarray) -> float:
    """Fraction of white pixels (the synthetic mouth)."""
    return float((tile.mean(axis=2) > 200).mean())


def test_sample_times() -> None:
    assert sample_times(15, 5).tolist() == [0, 4, 7, 10, 14]
    assert sample_times(3, 8).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        sample_times(0, 8)


def test_sheet_lines_up_a_looped_input_with_the_output(tmp_path: Path) -> None:
    source = _video(tmp_path / "in.mp4", [20 + 20 * i for i in range(10)])
    dubbed = _video(tmp_path / "out.mp4", [10] * 15)
    sheet = contact_sheet(source, [("bank", dubbed)], columns=5, track=_track(10), tile_height=H)
    zoom_h = round(W * 0.75)
    assert sheet.shape == (2 * H + 2 * zoom_h + 5 * GAP, 5 * W + 6 * GAP, 3)
    # output frames 0, 4, 7, 10, 14 come from input frames 0, 4, 7, 8, 4 (ping-pong over 10 frames)
    for col, src in enumerate([0, 4, 7, 8, 4]):
        corner = _tile(sheet, 0, col, H, zoom_h, 2)[-6:, -6:]  # away from the white mouth and the label
        assert corner.mean() == pytest.approx(20 + 20 * src, abs=4)
        assert _tile(sheet, 1, col, H, zoom_h, 2)[-6:, -6:].mean() == pytest.approx(10, abs=4)
        # zoomed on the mouth, the white patch fills much more of the tile than in the whole frame
        assert _white(_tile(sheet, 3, col, H, zoom_h, 2)) > 2 * _white(_tile(sheet, 1, col, H, zoom_h, 2))


def test_photo_input_and_png_output(tmp_path: Path) -> None:
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), cv2.cvtColor(_frame(90), cv2.COLOR_RGB2BGR))
    dubbed = _video(tmp_path / "out.mp4", [10 + 30 * i for i in range(6)])
    out = write_contact_sheet(
        tmp_path / "sheets" / "s.png",
        photo,
        [("a", dubbed), ("b", dubbed)],
        columns=3,
        track=_track(1),
        tile_height=H,
    )
    sheet = cv2.imread(str(out))
    zoom_h = round(W * 0.75)
    assert sheet.shape == (3 * H + 3 * zoom_h + 7 * GAP, 3 * W + 4 * GAP, 3)
    for col in range(3):
        assert _tile(sheet, 0, col, H, zoom_h, 3)[-6:, -6:].mean() == pytest.approx(90, abs=4)
    assert _tile(sheet, 2, 2, H, zoom_h, 3)[-6:, -6:].mean() == pytest.approx(10 + 30 * 5, abs=4)
    with pytest.raises(ValueError, match="at least one"):
        contact_sheet(photo, [])
