"""Adaptation ablation (issue #7, spec §5): zero-shot vs adapted without R_sync vs adapted with R_sync.

One target video, one held-out end (the last --holdout of its frames, never seen by adaptation), three models:

* zero-shot: the base model as is;
* adapted, λ_reg = 0: decoder tuned on LPIPS + λ_sync·L_sync only (the variant the paper says overfits);
* adapted, λ_reg > 0: the same plus R_sync driven by the audio pool (`stylelipsync adapt`'s default).

For each: reconstruction PSNR/SSIM on the held-out frames with their own audio (the model's output crop vs
the true crop), and the offline lip-sync scores of `stylelipsync.evaluation` (no downloaded weights) on the
held-out part dubbed with OTHER speakers' speech: (b) `sync_pred`, correlation of the mouth opening with the
opening predicted from the audio, and (a) `sync_energy`, with the speech energy; plus LSE-D/LSE-C when
--lse-weights (syncnet_python's syncnet_v2.model) is given. The evaluation speech is held out from the R_sync
pool: --eval-audio files, or else the last --n-eval-audio files of the pool.

Everything goes to --work (default /work/runs/adapt_ablation/<video stem>); rerunning continues the
adaptations from their checkpoints. Prints a Markdown table; --json writes the numbers.

    .venv/bin/python benchmarks/adapt_ablation.py --base MODEL --video CLIP --audio-pool DIR \\
        --syncnet DIR --steps 3000 [--lpips-weights PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylelipsync.adaptation.data import TargetData, collect_pool_files, prepare_target
from stylelipsync.adaptation.pipeline import AdaptationPipeline, AdaptOptions
from stylelipsync.adaptation.validation import heldout_reconstruction, trim_audio, write_heldout_video
from stylelipsync.evaluation.runner import EvalConfig, Evaluator, Job
from stylelipsync.models import StyleLipSync
from stylelipsync.pipelines import LipSyncPipeline, load_model

SYNC_COLUMNS = ("sync_pred", "sync_energy", "mouth_std", "lse_d", "lse_c")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="Base model directory or official .pth.")
    parser.add_argument("--w-avg", type=Path, help="w_avg.pth for an official .pth base.")
    parser.add_argument("--video", type=Path, required=True, help="Target person's talking video.")
    parser.add_argument("--audio-pool", type=Path, required=True, help="Other speakers' audio/video files.")
    parser.add_argument("--syncnet", type=Path, required=True, help="SyncNet expert (train-syncnet export).")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lpips-weights", type=Path)
    parser.add_argument("--work", type=Path, help="Work folder (default /work/runs/adapt_ablation/<stem>).")
    parser.add_argument("--eval-audio", type=Path, nargs="+", help="Speech to score sync with.")
    parser.add_argument("--n-eval-audio", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0, help="Length of each sync-scored video.")
    parser.add_argument("--lambda-sync", type=float, default=0.1)
    parser.add_argument("--lambda-reg", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--holdout", type=float, default=0.15)
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="PyTorch threads (1 on a busy CPU).")
    parser.add_argument("--lse-weights", type=Path, help="syncnet_v2.model for LSE-D/LSE-C.")
    parser.add_argument("--json", type=Path, help="Write the numbers here.")
    return parser.parse_args()


def split_audio(args: argparse.Namespace) -> tuple[list[Path], list[Path], str]:
    """(R_sync pool files, evaluation speech, note): the evaluation speech is kept out of the pool."""
    files = [f for f in collect_pool_files(args.audio_pool) if f.resolve() != args.video.resolve()]
    if args.eval_audio:
        held = {p.resolve() for p in args.eval_audio}
        return [f for f in files if f.resolve() not in held], list(args.eval_audio), "given with --eval-audio"
    if len(files) > args.n_eval_audio:
        return (
            files[: -args.n_eval_audio],
            files[-args.n_eval_audio :],
            "last files of the pool, kept out of it",
        )
    return files, files, "ALSO IN THE R_sync POOL (the pool is too small to hold any out)"


def adapt(
    args: argparse.Namespace, name: str, lambda_reg: float, pool: list[Path], work: Path
) -> tuple[Path, int]:
    """Run (or continue) one adaptation; returns its model directory and step count."""
    options = AdaptOptions(
        steps=args.steps,
        batch_size=args.batch_size,
        lambda_sync=args.lambda_sync,
        lambda_reg=lambda_reg,
        holdout=args.holdout,
        max_frames=args.max_frames,
        workers=args.workers,
        threads=args.threads,
    )
    pipe = AdaptationPipeline(args.base, args.syncnet, args.lpips_weights, options, w_avg=args.w_avg)
    out = work / name
    result = pipe(args.video, out, audio_pool=pool or None, resume=True, data_dir=work / "data")
    if not result.finished:
        raise SystemExit(f"{name}: stopped at step {result.step}; rerun to continue")
    print(result.summary(), flush=True)
    return out, result.step


def score(
    name: str,
    slug: str,
    model: StyleLipSync,
    data: TargetData,
    speech: list[Path],
    evaluator: Evaluator,
    work: Path,
    seconds: float,
) -> dict[str, Any]:
    """Held-out PSNR/SSIM and the mean sync scores of the held-out part dubbed with each evaluation speech."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    row: dict[str, Any] = {"model": name, **heldout_reconstruction(model, data, device)}
    clip = write_heldout_video(data, work / "heldout.mp4")
    pipe = LipSyncPipeline(model, device=device)
    per_audio: list[dict[str, Any]] = []
    for i, audio in enumerate(speech):
        wav = trim_audio(audio, work / "eval_audio" / f"{i:02d}_{audio.stem}.wav", seconds)
        out = work / "videos" / f"{slug}_{i:02d}.mp4"
        pipe(clip, wav, out, overwrite=True)
        result = evaluator.evaluate(Job(out.stem, out, audio=wav))
        per_audio.append({"audio": str(audio), **result.values, "notes": result.notes})
    for key in SYNC_COLUMNS:
        values = [r[key] for r in per_audio if isinstance(r.get(key), int | float) and math.isfinite(r[key])]
        row[key] = float(np.mean(values)) if values else float("nan")
    row["per_audio"] = per_audio
    return row


def fmt(value: Any, digits: int = 3) -> str:
    """Number for the table ('–' if missing)."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]], args: argparse.Namespace, data: TargetData, note: str) -> str:
    """Markdown report: set-up line and one row per model."""
    lse = args.lse_weights is not None
    head = ["model", "steps", "PSNR ↑", "SSIM ↑", "(b) sync_pred r ↑", "(a) sync_energy r ↑", "mouth std"]
    head += ["LSE-D ↓", "LSE-C ↑"] if lse else []
    lines = [
        f"Adaptation ablation: {args.video.name}, {data.cut} frames adapted on, frames {data.cut}-"
        f"{data.num_frames} held out ({data.heldout_frames / 25:.1f} s); base {args.base}; "
        f"{args.steps} steps, batch {args.batch_size}, λ_sync {args.lambda_sync}; perceptual "
        f"{'LPIPS' if args.lpips_weights else 'substitute (no LPIPS weights)'}; sync scored on the held-out "
        f"part dubbed with {len(rows[0]['per_audio'])} other speaker(s) ({note}), {args.seconds:g} s each; "
        f"Python {platform.python_version()}, torch {torch.__version__}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [r["model"], str(r["steps"]), fmt(r["psnr"], 2), fmt(r["ssim"]), fmt(r["sync_pred"])]
        cells += [fmt(r["sync_energy"]), fmt(r["mouth_std"])]
        cells += [fmt(r["lse_d"], 2), fmt(r["lse_c"], 2)] if lse else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    work = args.work or Path("/work/runs/adapt_ablation") / args.video.stem
    (work / "eval_audio").mkdir(parents=True, exist_ok=True)
    pool, speech, note = split_audio(args)
    data = prepare_target(args.video, work / "data", args.holdout, args.max_frames)
    no_reg, no_reg_steps = adapt(args, "adapted_no_reg", 0.0, [], work)
    with_reg, with_reg_steps = adapt(args, "adapted_reg", args.lambda_reg, pool, work)
    metrics = ("sync", "lse") if args.lse_weights else ("sync",)
    evaluator = Evaluator(EvalConfig(metrics=metrics, syncnet_weights=args.lse_weights))
    models = [
        ("zero-shot", "zero_shot", load_model(args.base, args.w_avg), 0),
        ("adapted, λ_reg = 0", "no_reg", StyleLipSync.from_pretrained(no_reg), no_reg_steps),
        (
            f"adapted, λ_reg = {args.lambda_reg:g}",
            "reg",
            StyleLipSync.from_pretrained(with_reg),
            with_reg_steps,
        ),
    ]
    rows = []
    for name, slug, model, steps in models:
        row = score(name, slug, model, data, speech, evaluator, work, args.seconds)
        rows.append({**row, "steps": steps})
        print(f"{name}: PSNR {rows[-1]['psnr']:.2f} SSIM {rows[-1]['ssim']:.3f} sync {rows[-1]['sync_pred']}")
    report = table(rows, args, data, note)
    print("\n" + report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
