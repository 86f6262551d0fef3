#!/usr/bin/env bash
# Regenerate the shipped default model (src/stylelipsync/assets/default_model/) from the shared talking clips.
#
#   scripts/train_demo_model.sh [MEDIA_DIR] [WORK_DIR]
#
# MEDIA_DIR defaults to ../shared/media (its MANIFEST.tsv names the talking clips, persons and companion audio);
# WORK_DIR (default /work/runs) receives the dataset and the run folders, never the repository.
# Stages: 1 preprocess (256² crops) -> 2 audio encoder pre-trained on mouth opening (configs/demo_audio.yaml)
# -> 3 SyncNet expert -> 4 warm-up: StyleLipSync with the decoder trained jointly from scratch, 600 steps
# (configs/demo_model.yaml) -> 5 600 steps from the warm-up with the stage-2 audio encoder frozen
# (configs/demo_model_finetune.yaml) -> 6 400 steps with a 5x higher decoder learning rate
# (configs/demo_model_finetune2.yaml) -> 7 plus the mouth-opening loss read by the SyncNet expert
# (configs/demo_model_finetune3.yaml), 800 steps -> 8 pixel losses on the pasted region only plus a patch
# discriminator there (configs/demo_model_finetune4.yaml), 1200 steps -> 9 the same with the pixel losses back on
# the whole crop (configs/demo_model_finetune5.yaml; the shipped model is its step 300) -> fp16 export into the
# package, with the stage-3 SyncNet expert (src/stylelipsync/assets/syncnet/, `adapt`'s default --syncnet). Every stage resumes where it stopped: re-run the script to continue after an interruption.
# Environment: STEPS (stage-9 steps, default 100000: stop it whenever; the export takes CHECKPOINT or the latest),
# AUDIO_STEPS (default 1000; the shipped encoder is its step-625 checkpoint, the best held-out correlation),
# SYNCNET_STEPS (default 3000), WORKERS (preprocess workers, default 2), CHECKPOINT (stage-9 checkpoint folder
# to ship), EXPORT_ONLY=1 (skip training).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEDIA="${1:-$REPO/../shared/media}"
WORK="${2:-/work/runs}"
BIN="${STYLELIPSYNC:-$REPO/.venv/bin/stylelipsync}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
DATA="$WORK/dataset256"
AUDIO="$WORK/demo_audio"
SYNC="$WORK/syncnet_probe"
WARMUP="$WORK/demo_model"
STAGE5="$WORK/demo_model_finetune"
STAGE6="$WORK/demo_model_ft2"
STAGE7="$WORK/demo_model_ft3"
STAGE8="$WORK/demo_model_ft4"
RUN="$WORK/demo_model_ft5"
OUT="$REPO/src/stylelipsync/assets/default_model"
SYNC_OUT="$REPO/src/stylelipsync/assets/syncnet"
mkdir -p "$WORK"

resume_flag() { [ -d "$1/checkpoints" ] && ls "$1/checkpoints" | grep -q checkpoint- && echo --resume || true; }

# finetune RUN_DIR CONFIG INIT STEPS [ARGS...]: STEPS steps from INIT with the stage-2 audio encoder frozen and
# the decoder trained, then export that step to RUN_DIR/export_STEPS (skipped when that export exists).
finetune() {
  local dir=$1 config=$2 init=$3 steps=$4
  shift 4
  [ -f "$dir/export_$steps/model.safetensors" ] && return
  "$BIN" train --preset small --config "$REPO/configs/$config" --data "$DATA" --out "$dir" \
    --init "$init" --audio-init "$AUDIO/export_625" --freeze-audio --train-decoder "$@" \
    --stop-after "$steps" $(resume_flag "$dir")
  "$BIN" export-checkpoint --run "$dir" --checkpoint "$dir/checkpoints/$(printf 'checkpoint-%08d' "$steps")" \
    --out "$dir/export_$steps"
}

if [ "${EXPORT_ONLY:-0}" != 1 ]; then
  # 1. data: 256² crops, pose-aware masks, log-mels, landmarks (skips clips already done)
  "$BIN" preprocess --input "$MEDIA" --manifest "$MEDIA/MANIFEST.tsv" --output "$DATA" --size 256 \
    --workers "${WORKERS:-2}"

  # 2. audio encoder: mel window -> mouth opening, validated on the held-out persons
  if [ ! -f "$AUDIO/export_625/audio_encoder.safetensors" ]; then
    "$BIN" train-audio --config "$REPO/configs/demo_audio.yaml" --data "$DATA" --out "$AUDIO" \
      --steps "${AUDIO_STEPS:-1000}" $(resume_flag "$AUDIO")
    "$BIN" export-checkpoint --run "$AUDIO" --checkpoint "$AUDIO/checkpoints/checkpoint-00000625" \
      --out "$AUDIO/export_625"
  fi

  # 3. SyncNet expert (configs/demo_syncnet.yaml: per-clip normalised mels, the 5 held-out persons)
  if [ ! -f "$SYNC/export/config.json" ]; then
    "$BIN" train-syncnet --preset small --config "$REPO/configs/demo_syncnet.yaml" --data "$DATA" --out "$SYNC" \
      --steps "${SYNCNET_STEPS:-3000}" $(resume_flag "$SYNC")
    [ -f "$SYNC/export/config.json" ] || "$BIN" export-checkpoint --run "$SYNC" --out "$SYNC/export"
  fi

  # 4. warm-up: encoders + MaLS + decoder (joint, from scratch) with the SyncNet loss
  if [ ! -f "$WARMUP/export_600/model.safetensors" ]; then
    "$BIN" train --preset small --config "$REPO/configs/demo_model.yaml" --data "$DATA" --out "$WARMUP" \
      --syncnet "$SYNC/export" --train-decoder --stop-after "${WARMUP_STEPS:-600}" $(resume_flag "$WARMUP")
    "$BIN" export-checkpoint --run "$WARMUP" --out "$WARMUP/export_600"
  fi

  # 5. 600 steps with the pre-trained audio encoder frozen (no SyncNet loss)
  finetune "$STAGE5" demo_model_finetune.yaml "$WARMUP/export_600" 600

  # 6. 400 steps with the decoder at 1.5e-3
  finetune "$STAGE6" demo_model_finetune2.yaml "$STAGE5/export_600" 400

  # 7. plus the mouth-opening loss (the SyncNet expert's opening head on the generated frames)
  finetune "$STAGE7" demo_model_finetune3.yaml "$STAGE6/export_400" 800 --syncnet "$SYNC/export"

  # 8. pixel losses on the pasted region only, plus a patch discriminator on it
  finetune "$STAGE8" demo_model_finetune4.yaml "$STAGE7/export_800" 1200 --syncnet "$SYNC/export"

  # 9. the same with the pixel losses on the whole crop again (removes the seam stage 8 leaves)
  "$BIN" train --preset small --config "$REPO/configs/demo_model_finetune5.yaml" --data "$DATA" --out "$RUN" \
    --init "$STAGE8/export_1200" --audio-init "$AUDIO/export_625" --freeze-audio --train-decoder \
    --syncnet "$SYNC/export" --steps "${STEPS:-100000}" $(resume_flag "$RUN")
fi

# 10. export the chosen (default: latest) checkpoint, then store it in fp16 inside the package
"$BIN" export-checkpoint --run "$RUN" --out "$RUN/export_latest" ${CHECKPOINT:+--checkpoint "$CHECKPOINT"}
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

# 11. the stage-3 SyncNet expert in fp16 beside it (2.9 MB): `stylelipsync adapt` uses it without --syncnet
"$PY" - "$SYNC/export" "$SYNC_OUT" <<'PYEOF'
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
state = load_file(str(src / "model.safetensors"))
half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
save_file(half, str(dst / "model.safetensors"), metadata={"format": "pt", "model": "SyncNetExpert", "dtype": "fp16"})
shutil.copy(src / "config.json", dst / "config.json")
(dst / "model.safetensors").chmod(0o644)
print(f"shipped {dst} ({(dst / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")
PYEOF
