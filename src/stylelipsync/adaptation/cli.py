"""``stylelipsync adapt``: few-shot adaptation of a model to one person (spec §5).

``stylelipsync.cli`` registers the command on the root group. The work is done by
``stylelipsync.adaptation.pipeline``, imported only when the command runs: it needs the training extras and
PyTorch, which the root CLI must not import at start-up.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from stylelipsync.cli_common import user_errors

_PATH = click.Path(path_type=Path)

ADAPT_EXAMPLES = """
\b
Examples:
  stylelipsync adapt --video alice.mp4 --output models/alice    # shipped model and SyncNet expert
  stylelipsync adapt --video alice.mp4 --checkpoint models/base --output models/alice \\
      --syncnet runs/syncnet/export --audio-pool other_speakers/ --lpips-weights vgg_lpips.pth
  stylelipsync adapt ... --resume                       # continue after an interruption
  stylelipsync adapt ... --validate speech.wav          # + held-out PSNR/SSIM and models/alice/preview.mp4
  stylelipsync generate -c models/alice -v alice.mp4 -a speech.wav -o dubbed.mp4
"""


def _default_regulariser(opts: dict[str, Any]) -> None:
    """Without other speakers' audio, turn R_sync off with a warning, unless --lambda-reg was asked for.

    R_sync needs speech of people other than the target; none ships with the package (no media in it), so
    `adapt --video V --output O` runs on L_sync and the perceptual loss alone. An explicit --lambda-reg keeps
    the pipeline's error that asks for a pool.
    """
    if opts["audio_pool"] is not None or opts["reg_data"] is not None or opts["lambda_reg"] == 0:
        return
    source = click.get_current_context().get_parameter_source("lambda_reg")
    if source is not click.core.ParameterSource.DEFAULT:
        return
    opts["lambda_reg"] = 0.0
    click.secho(
        "warning: no --audio-pool or --reg-data: adapting without R_sync, the sync regulariser driven by "
        "other speakers' audio, so the mouth may follow new speech less well; pass --audio-pool DIR (audio "
        "or video files of other people talking) to use it",
        fg="yellow",
        err=True,
    )


@click.command("adapt", epilog=ADAPT_EXAMPLES)
@click.option(
    "--video",
    "-v",
    required=True,
    type=_PATH,
    help="The target person talking, face visible, with its own speech (10-60 s recommended).",
)
@click.option(
    "--checkpoint",
    "-c",
    type=_PATH,
    help="Base model directory, or an official .pth (with --w-avg). Default: the shipped model.",
)
@click.option("--w-avg", type=_PATH, help="Official w_avg.pth to go with an official .pth base.")
@click.option(
    "--output",
    "-o",
    required=True,
    type=_PATH,
    help="Person model folder to write (generate --checkpoint loads it); work folder: OUTPUT/.adapt_run.",
)
@click.option(
    "--syncnet",
    type=_PATH,
    help="SyncNet expert folder (a train-syncnet export) for L_sync and R_sync. Default: the expert shipped "
    "with the demo model (trained on the demo model's 128² crops; for another base, its own expert).",
)
@click.option(
    "--audio-pool",
    type=_PATH,
    help="Folder of other speakers' audio or video files: their speech drives R_sync. Without it (or "
    "--reg-data) R_sync is off, with a warning.",
)
@click.option(
    "--reg-data",
    type=_PATH,
    help="Instead of --audio-pool: a preprocessed training dataset whose clips' audio drives R_sync.",
)
@click.option(
    "--lpips-weights",
    type=_PATH,
    help="LPIPS-VGG16 state dict. Without it a substitute (1 - MS-SSIM + mouth L1) is used, with a warning.",
)
@click.option("--steps", type=click.IntRange(1), default=3000, show_default=True, help="Optimiser steps.")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True, help="Clips per step.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True)
@click.option("--lambda-sync", type=click.FloatRange(0), default=0.1, show_default=True, help="L_sync weight")
@click.option("--lambda-reg", type=click.FloatRange(0), default=0.1, show_default=True, help="R_sync weight")
@click.option(
    "--holdout",
    type=click.FloatRange(0, 0.5),
    default=0.15,
    show_default=True,
    help="Fraction of the video, at its end, never used for adaptation (for --validate).",
)
@click.option("--max-frames", type=click.IntRange(1), help="Use only the first N frames (25 fps) of VIDEO.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=250, show_default=True)
@click.option(
    "--preview-every",
    type=click.IntRange(0),
    default=250,
    show_default=True,
    help="Write a preview grid to OUTPUT/.adapt_run/images every N steps (0: only at the end).",
)
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True, help="DataLoader workers.")
@click.option("--threads", type=click.IntRange(0), default=0, help="PyTorch threads (1 on a busy CPU).")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in OUTPUT/.adapt_run.")
@click.option("--overwrite", is_flag=True, help="Replace a model already in OUTPUT.")
@click.option(
    "--validate",
    "validate_audio",
    type=_PATH,
    help="After adapting: print held-out PSNR/SSIM (base vs adapted) and write OUTPUT/preview.mp4 of the "
    "held-out part driven by this speech.",
)
@click.option("--cpu", is_flag=True, help="Adapt on the CPU even if a GPU is present.")
@user_errors
def adapt_command(**opts: Any) -> None:
    """Adapt a model's decoder to the person in VIDEO and write OUTPUT (see docs/adapt.md)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from stylelipsync.adaptation.pipeline import AdaptationPipeline, AdaptOptions
    except ImportError as exc:
        raise click.ClickException(
            f"adaptation needs the training extras ({exc}); install them with: pip install -e '.[train]'"
        ) from exc
    if opts["audio_pool"] is not None and opts["reg_data"] is not None:
        raise click.UsageError("give --audio-pool or --reg-data, not both")
    _default_regulariser(opts)
    options = AdaptOptions(
        steps=opts["steps"],
        batch_size=opts["batch_size"],
        lr=opts["lr"],
        lambda_sync=opts["lambda_sync"],
        lambda_reg=opts["lambda_reg"],
        holdout=opts["holdout"],
        max_frames=opts["max_frames"],
        checkpoint_every=opts["checkpoint_every"],
        preview_every=opts["preview_every"],
        workers=opts["workers"],
        threads=opts["threads"],
        cpu=opts["cpu"],
    )
    try:
        pipe = AdaptationPipeline(
            opts["checkpoint"], opts["syncnet"], opts["lpips_weights"], options, w_avg=opts["w_avg"]
        )
        result = pipe(
            opts["video"],
            opts["output"],
            audio_pool=opts["audio_pool"],
            reg_data=opts["reg_data"],
            resume=opts["resume"],
            overwrite=opts["overwrite"],
            validate_audio=opts["validate_audio"],
        )
    except (FileNotFoundError, ValueError) as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    click.echo(result.summary())
    if not result.finished:
        sys.exit(130)
