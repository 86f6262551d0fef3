#!/usr/bin/env bash
# Regenerate the shipped default model (src/stylelipsync/assets/default_model/) from the shared talking clips.
#
#   scripts/train_demo_model.sh [MEDIA_DIR] [WORK_DIR]
#
# MEDIA_DIR defaults to ../shared/media (its MANIFEST.tsv names the talking clips, persons and companion audio);
# WORK_DIR (default /work/runs) receives the dataset and the run folders, never the repository.
# Stages: preprocess (256² crops) -> SyncNet expert -> StyleLipSync, decoder trained jointly from scratch
# (configs/demo_model.yaml) -> fp16 export into the package. Every stage resumes where it stopped:
# re-run the script (or the printed command with --resume) to continue after an interruption.
# Environment: STEPS (StyleLipSync steps, default 100000: stop it whenever; the export takes the latest checkpoint),
# SYNCNET_STEPS (default 3000), WORKERS (preprocess workers, default 2), EXPORT_ONLY=1 (skip training).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEDIA="${1:-$REPO/../shared/media}"
WORK="${2:-/work/runs}"
BIN="${STYLELIPSYNC:-$REPO/.venv/bin/stylelipsync}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
DATA="$WORK/dataset256"
SYNC="$WORK/syncnet_probe"
RUN="$WORK/demo_model"
OUT="$REPO/src/stylelipsync/assets/default_model"
mkdir -p "$WORK"

resume_flag() { [ -d "$1/checkpoints" ] && ls "$1/checkpoints" | grep -q checkpoint- && echo --resume || true; }

if [ "${EXPORT_ONLY:-0}" != 1 ]; then
  # 1. data: 256² crops, pose-aware masks, log-mels, landmarks (skips clips already done)
  "$BIN" preprocess --input "$MEDIA" --manifest "$MEDIA/MANIFEST.tsv" --output "$DATA" --size 256 \
    --workers "${WORKERS:-2}"

  # 2. SyncNet expert (configs/demo_syncnet.yaml: per-clip normalised mels, the 5 held-out persons)
  if [ ! -f "$SYNC/export/config.json" ]; then
    "$BIN" train-syncnet --preset small --config "$REPO/configs/demo_syncnet.yaml" --data "$DATA" --out "$SYNC" \
      --steps "${SYNCNET_STEPS:-3000}" $(resume_flag "$SYNC")
    [ -f "$SYNC/export/config.json" ] || "$BIN" export-checkpoint --run "$SYNC" --out "$SYNC/export"
  fi

  # 3. StyleLipSync: encoders + MaLS + decoder (joint, from scratch) with the SyncNet loss
  "$BIN" train --preset small --config "$REPO/configs/demo_model.yaml" --data "$DATA" --out "$RUN" \
    --syncnet "$SYNC/export" --train-decoder --steps "${STEPS:-100000}" $(resume_flag "$RUN")
fi

# 4. export the latest checkpoint, then store it in fp16 inside the package
"$BIN" export-checkpoint --run "$RUN" --out "$RUN/export_latest"
"$PY" - "$RUN/export_latest" "$OUT" <<'PYEOF'
import json
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
config = json.loads((src / "config.json").read_text())
info = json.loads((src / "training.json").read_text())
if info.get("mel_norm") == "clip" and config.get("mel_normalization") != "per_clip":
    sys.exit("trained with data.mel_norm: clip but the model config does not say mel_normalization: per_clip")
state = load_file(str(src / "model.safetensors"))
half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
save_file(half, str(dst / "model.safetensors"), metadata={"format": "pt", "model": "StyleLipSync", "dtype": "fp16"})
shutil.copy(src / "config.json", dst / "config.json")
shutil.copy(src / "training.json", dst / "training.json")
(dst / "model.safetensors").chmod(0o644)
size = (dst / "model.safetensors").stat().st_size
print(f"shipped {dst} ({size / 1e6:.1f} MB)")
assert size <= 30e6, "the shipped weights must stay under 30 MB"
PYEOF
