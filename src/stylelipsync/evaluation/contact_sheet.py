"""Contact sheets of dubbed videos: input frames above output frames, then the same rows zoomed on the mouth.

Numbers say whether a mouth is sharp, moving and in sync; only looking shows seams, colour patches, doubled
creases or teeth that come and go. A sheet puts `columns` evenly spaced times of the output side by side with
the input frame the output was made from at that time (the input extended like the pipeline does, ping-pong by
default, so a short clip or a photo lines up), in two parts:

1. whole frames: the input row, then one row per output video;
2. the mouth, zoomed: the same rows cropped around the input's mouth, a box 1.1 outer eye-corner distances
   wide centred on the outer lips (smoothed landmarks of the input's face track). The same box is cut from
   every row so differences are the renderer's, not the crop's.

Enlarged tiles use bicubic interpolation and reduced ones area averaging, so the sheet does not invent or
hide sharpness.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.evaluation.mouth_opening import EYE_OUTER_CORNERS
from stylelipsync.face.landmarks import LIPS_OUTER
from stylelipsync.face.track import FaceTrack
from stylelipsync.media import VideoReader
from stylelipsync.pipelines.timeline import LoopMode, source_indices

Image = NDArray[np.uint8]

ZOOM_WIDTH_EYES = 1.1
"""Mouth box width in outer eye-corner distances (the mouth is about 0.55 wide: lips, corners and cheeks)."""
ZOOM_ASPECT = 0.75
GAP = 4
BACKGROUND = (24, 24, 24)


def sample_times(num_output: int, columns: int) -> NDArray[np.int64]:
    """`columns` evenly spaced output frame indices, first to last frame (fewer if the video is shorter)."""
    if num_output < 1:
        raise ValueError("the output video has no frames")
    return np.unique(np.linspace(0, num_output - 1, min(columns, num_output)).round().astype(np.int64))


def grab_frames(path: str | Path, indices: Iterable[int]) -> dict[int, Image]:
    """RGB frames at `indices` of a video (or the single frame of a photo), decoded in one pass.

    An index past the last decoded frame (a header that overstates the frame count) gets the last frame.
    """
    wanted = {int(i) for i in indices}
    out: dict[int, Image] = {}
    last_image: Image | None = None
    with VideoReader(path) as reader:
        last = max(wanted, default=-1)
        for frame in reader:
            last_image = frame.image
            if frame.index in wanted:
                out[frame.index] = frame.image
            if frame.index >= last:
                break
    if last_image is None:
        raise ValueError(f"{path}: no frame could be decoded")
    return {i: out.get(i, last_image) for i in wanted}


def mouth_box(track: FaceTrack, t: int) -> tuple[float, float, float] | None:
    """(centre x, centre y, width) of the mouth box at frame `t`, from the track's nearest valid frame."""
    valid = np.flatnonzero(track.valid)
    if valid.size == 0:
        return None
    lm = track.landmarks[int(valid[np.argmin(np.abs(valid - t))]), :, :2].astype(np.float64)
    eyes = float(np.linalg.norm(lm[EYE_OUTER_CORNERS[1]] - lm[EYE_OUTER_CORNERS[0]]))
    centre = lm[list(LIPS_OUTER)].mean(axis=0)
    return float(centre[0]), float(centre[1]), ZOOM_WIDTH_EYES * eyes


def _resize(image: Image, width: int, height: int) -> Image:
    shrink = width * height < image.shape[0] * image.shape[1]
    return np.asarray(
        cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    )


def _cut(image: Image, box: tuple[float, float, float], scale: tuple[float, float]) -> Image:
    """The box (in input pixels, scaled by `scale` into this image), shifted inside the frame if it can be."""
    cx, cy, width = box
    w, h = max(2, round(width * scale[0])), max(2, round(width * ZOOM_ASPECT * scale[1]))
    w, h = min(w, image.shape[1]), min(h, image.shape[0])
    x0 = int(np.clip(round(cx * scale[0] - w / 2), 0, image.shape[1] - w))
    y0 = int(np.clip(round(cy * scale[1] - h / 2), 0, image.shape[0] - h))
    return image[y0 : y0 + h, x0 : x0 + w]


def _label(tile: Image, text: str) -> Image:
    """White text with a dark outline in the tile's top-left corner."""
    out = np.ascontiguousarray(tile)
    if not text:
        return out
    scale = max(0.35, tile.shape[0] / 360)
    thick = max(1, round(scale * 1.5))
    org = (4, 4 + round(16 * scale))
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def _grid(rows: list[list[Image]]) -> Image:
    """Tiles of equal size per row, separated by GAP pixels of BACKGROUND."""
    width = max(sum(t.shape[1] for t in row) + GAP * (len(row) + 1) for row in rows)
    height = sum(row[0].shape[0] for row in rows) + GAP * (len(rows) + 1)
    sheet = np.empty((height, width, 3), np.uint8)
    sheet[:] = BACKGROUND
    y = GAP
    for row in rows:
        x = GAP
        for tile in row:
            sheet[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
            x += tile.shape[1] + GAP
        y += row[0].shape[0] + GAP
    return sheet


def contact_sheet(
    input_video: str | Path,
    outputs: Sequence[tuple[str, str | Path]],
    *,
    columns: int = 8,
    track: FaceTrack | None = None,
    loop: LoopMode | str = LoopMode.PINGPONG,
    tile_height: int = 200,
    cache_dir: str | Path | None = None,
) -> Image:
    """RGB contact sheet of `outputs` ((label, video) pairs, same frame rate as the input) against the input.

    `track` is the input's face track at its native rate (tracked here, cached in `cache_dir`, if None);
    `loop` is how the dub extended an input shorter than its audio. The times come from the first output.
    """
    if not outputs:
        raise ValueError("give at least one output video")
    with VideoReader(outputs[0][1]) as reader:
        num_output, fps = len(reader), float(reader.rate)
    with VideoReader(input_video) as reader:
        num_input = len(reader)
    times = sample_times(num_output, columns)
    src = source_indices(num_output, num_input, loop)[times]
    if track is None:
        track = track_video(input_video, cache_dir=cache_dir)
    labelled = [("input", grab_frames(input_video, src), src)]
    labelled += [(name, grab_frames(path, times), times) for name, path in outputs]
    first = labelled[0][1][int(src[0])]
    in_h, in_w = first.shape[:2]
    tile_w = max(2, round(tile_height * in_w / in_h))
    zoom_h = max(2, round(tile_w * ZOOM_ASPECT))
    boxes = [mouth_box(track, int(s)) for s in src]
    frame_rows: list[list[Image]] = []
    zoom_rows: list[list[Image]] = []
    for name, frames, index in labelled:
        frame_row, zoom_row = [], []
        for col, i in enumerate(index):
            image = frames[int(i)]
            scale = (image.shape[1] / in_w, image.shape[0] / in_h)
            text = f"{name} {times[col] / fps:.2f}s" if col == 0 else f"{times[col] / fps:.2f}s"
            frame_row.append(_label(_resize(image, tile_w, tile_height), text))
            box = boxes[col]
            mouth = _cut(image, box, scale) if box is not None else image
            zoom_row.append(_label(_resize(mouth, tile_w, zoom_h), name if col == 0 else ""))
        frame_rows.append(frame_row)
        zoom_rows.append(zoom_row)
    return _grid(frame_rows + zoom_rows)


def write_contact_sheet(
    path: str | Path,
    input_video: str | Path,
    outputs: Sequence[tuple[str, str | Path]],
    *,
    columns: int = 8,
    track: FaceTrack | None = None,
    loop: LoopMode | str = LoopMode.PINGPONG,
    tile_height: int = 200,
    cache_dir: str | Path | None = None,
) -> Path:
    """`contact_sheet` written as a PNG (or JPEG, by suffix) to `path`; returns the path."""
    target = Path(path)
    sheet = contact_sheet(
        input_video,
        outputs,
        columns=columns,
        track=track,
        loop=loop,
        tile_height=tile_height,
        cache_dir=cache_dir,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{target}: could not write the contact sheet")
    return target
