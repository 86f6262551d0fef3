"""Held-out accuracy of a SyncNet expert run on the persons its config holds out.

Train first (in the background, checkpointing), for example on the shared clips::

    stylelipsync preprocess --input ../shared/media --manifest ../shared/media/MANIFEST.tsv \
        --output /work/runs/dataset256 --workers 2
    nice -n 10 stylelipsync train-syncnet --out /work/runs/syncnet_probe --config syncnet_probe.yaml

then evaluate its latest checkpoint (or ``--checkpoint DIR``) on every held-out window::

    python benchmarks/train_syncnet_probe.py --run /work/runs/syncnet_probe [--stride 1]

Printed: the same metrics as the trainer's validation (accuracy on true / ≥5-frame-shifted / other-clip
audio, ranking of true vs shifted audio for the same frames, ±15-frame offset detection), as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from stylelipsync.models.syncnet import SyncNetExpert
from stylelipsync.training.config import load_yaml, merge
from stylelipsync.training.train_syncnet import SyncNetTask, SyncNetTrainConfig
from stylelipsync.training.trainer import latest_checkpoint, load_checkpoint_modules


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="train-syncnet run directory")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the latest)")
    parser.add_argument("--stride", type=int, default=1, help="window stride on the held-out clips")
    parser.add_argument("--max-windows", type=int, default=100_000)
    parser.add_argument("--offset-windows", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ckpt = args.checkpoint or latest_checkpoint(args.run)
    if ckpt is None:
        raise SystemExit(f"{args.run}: no checkpoint yet")
    config = load_yaml(SyncNetTrainConfig, ckpt / "config.yaml", base=SyncNetTrainConfig.preset("small"))
    config = merge(
        config,
        {
            "val_stride": args.stride,
            "val_max_windows": args.max_windows,
            "val_offset_windows": args.offset_windows,
        },
    )
    task = SyncNetTask(config)
    task.net = SyncNetExpert(config.model)
    task.net.load_state_dict(load_checkpoint_modules(ckpt)["syncnet"])
    step = json.loads((ckpt / "trainer_state.json").read_text())["step"]
    metrics = task.evaluate()
    held = sorted({c.person for c in task.split()[1]})
    print(json.dumps({"checkpoint": str(ckpt), "step": step, "held_out_persons": held, **metrics}, indent=2))


if __name__ == "__main__":
    main()
