"""Fit the lip-shape basis shipped as `assets/lip_basis.safetensors` (see `face/mouth_shape.py`).

Every `talking_av` clip of the shared media is tracked (cached in --cache, outside the repository), its lip
landmarks are taken into the person's model space, the clip's mean shape is removed (identity), and the
first K principal directions of what remains (how lips deform while speaking) are kept. Each person counts
equally (frames are subsampled to at most --per-person per person), so long clips do not dominate.

    .venv/bin/python scripts/fit_lip_basis.py --media ../shared/media --cache /work/runs/eval_cache
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from pathlib import Path

import numpy as np

from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.face.geometry import FaceModel
from stylelipsync.face.mouth_shape import BASIS_ASSET, LipBasis, fit_basis, mouth_shapes
from stylelipsync.training.preprocess import read_media_manifest

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("fit_lip_basis")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    parser.add_argument("--cache", type=Path, default=Path("/work/runs/eval_cache"))
    parser.add_argument("--components", type=int, default=4)
    parser.add_argument("--per-person", type=int, default=600)
    parser.add_argument("--out", type=Path, default=REPO / "src" / "stylelipsync" / "assets" / BASIS_ASSET)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    by_person: dict[str, list[np.ndarray]] = {}
    for name, row in sorted(read_media_manifest(args.media / "MANIFEST.tsv").items()):
        track = track_video(args.media / name, cache_dir=args.cache)
        model = FaceModel.from_landmarks(track.landmarks, track.valid)
        shapes = mouth_shapes(track.raw, model, track.detected)
        lips = shapes.lips[shapes.valid]
        by_person.setdefault(row["person"], []).append(lips - lips.mean(axis=0))
    rng = np.random.default_rng(0)
    parts = []
    for person, clips in sorted(by_person.items()):
        lips = np.concatenate(clips)
        if len(lips) > args.per_person:
            lips = lips[rng.choice(len(lips), args.per_person, replace=False)]
        parts.append(lips)
        log.info("%-22s %5d frames", person, len(lips))
    data = np.concatenate(parts)
    comps = fit_basis(data, args.components)
    flat = data.reshape(len(data), -1)
    total = float(((flat - flat.mean(axis=0)) ** 2).sum())
    explained = [float(((flat @ c) ** 2).sum()) / total for c in comps]
    log.info("explained variance per component: %s", ", ".join(f"{e:.3f}" for e in explained))
    info = {
        "date": dt.date.today().isoformat(),
        "persons": str(len(by_person)),
        "frames": str(len(data)),
        "explained_variance": json_list(explained),
        "recipe": "scripts/fit_lip_basis.py",
    }
    LipBasis(comps, info).save(args.out)
    log.info("wrote %s", args.out)


def json_list(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


if __name__ == "__main__":
    main()
