"""Training commands of the ``stylelipsync`` CLI: preprocess, train-audio, train-syncnet, train-stylegan,
train, export.

``stylelipsync.cli`` registers `TRAINING_COMMANDS` on the root group; the training stack is imported only
when a command runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from stylelipsync.errors import StyleLipSyncError


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(exc: Exception) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    raise SystemExit(exc.exit_code if isinstance(exc, StyleLipSyncError) else 1)


@click.command("preprocess")
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Folder of videos (recursive), one video, or a file list (video[<TAB>audio[<TAB>person]]).",
)
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Dataset directory to write.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Parallel processes.")
@click.option("--size", type=click.IntRange(32), default=256, show_default=True, help="Crop side in pixels.")
@click.option(
    "--manifest",
    type=click.Path(exists=True, path_type=Path),
    help="Shared-media MANIFEST.tsv: use its talking_av rows, person_tag and companion audio.",
)
@click.option("--max-frames", type=click.IntRange(1), help="Keep only the first N frames of each video.")
@click.option("--scene-cut", is_flag=True, help="Split videos at scene cuts (histogram difference).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def preprocess_command(
    input_path: Path,
    output: Path,
    workers: int,
    size: int,
    manifest: Path | None,
    max_frames: int | None,
    scene_cut: bool,
    quiet: bool,
) -> None:
    """Turn talking-face videos into a training dataset (crops, masks, landmarks, audio, mel).

    \b
    Example:
      stylelipsync preprocess --input ../shared/media --manifest ../shared/media/MANIFEST.tsv \\
          --output /data/dataset256 --workers 2
    """
    from stylelipsync.training.preprocess import PreprocessOptions, preprocess

    _logging()
    options = PreprocessOptions(size=size, max_frames=max_frames, scene_cut=scene_cut)
    try:
        result = preprocess(input_path, output, workers, options, manifest, progress=not quiet)
    except StyleLipSyncError as exc:
        _fail(exc)
    click.echo(
        f"{result['num_clips']} clips ({result['num_frames']} frames, {result['num_persons']} persons) in "
        f"{output}; {result['num_failures']} failed"
    )
    for failure in result["failures"]:
        click.secho(f"  failed: {failure['source']}: {failure['error']}", fg="yellow", err=True)


def _train_options(func: Any) -> Any:
    options = [
        click.option(
            "--data", type=click.Path(path_type=Path), help="Dataset directory (from `preprocess`)."
        ),
        click.option(
            "--out", "run_dir", required=True, type=click.Path(path_type=Path), help="Run directory."
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(exists=True, path_type=Path),
            help="YAML config (any subset of the fields; see docs/training.md).",
        ),
        click.option("--preset", help="Named config: tiny, small (default), paper; train also adapt."),
        click.option("--steps", type=click.IntRange(1), help="Total optimiser steps (overrides the config)."),
        click.option("--batch-size", type=click.IntRange(1), help="Per-process batch size."),
        click.option(
            "--workers", "num_workers", type=click.IntRange(0), help="DataLoader workers per process."
        ),
        click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out."),
        click.option("--stop-after", type=click.IntRange(1), help="Stop (with a checkpoint) at this step."),
        click.option("--cpu", is_flag=True, help="Train on the CPU even if a GPU is present."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _runs_module() -> Any:
    """`stylelipsync.training.runs`, or a message naming the extra to install when it cannot be imported."""
    try:
        from stylelipsync.training import runs
    except ImportError as exc:
        raise click.ClickException(
            f"training needs the training extras ({exc}); install them with: pip install -e '.[train]'"
        ) from exc
    return runs


def _run(kind: str, opts: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    run_training = _runs_module().run_training
    _logging()
    try:
        out = run_training(kind, extra=extra or {}, **opts)
    except (StyleLipSyncError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    if out is not None:
        click.echo(f"exported to {out}")


@click.command("train-syncnet")
@_train_options
def train_syncnet_command(**opts: Any) -> None:
    """Train the SyncNet lip-sync expert; reports held-out accuracy (in sync vs shifted vs other audio)."""
    _run("syncnet", opts)


@click.command("train-audio")
@_train_options
def train_audio_command(**opts: Any) -> None:
    """Pre-train the audio encoder to predict mouth opening; reports held-out per-clip correlation."""
    _run("audio", opts)


@click.command("train-stylegan")
@_train_options
def train_stylegan_command(**opts: Any) -> None:
    """Pre-train the StyleGAN2 decoder on face crops; exports synthesis weights + w_avg."""
    _run("stylegan", opts)


@click.command("train")
@_train_options
@click.option("--decoder", type=click.Path(path_type=Path), help="Decoder export of `train-stylegan`.")
@click.option("--syncnet", type=click.Path(path_type=Path), help="SyncNet export of `train-syncnet`.")
@click.option("--train-decoder", is_flag=True, help="Train the decoder jointly (small configs from scratch).")
@click.option("--init", "init", type=click.Path(path_type=Path), help="Start from a trained model directory.")
@click.option("--adapt", is_flag=True, help="Few-shot adaptation: tune only the decoder of --init (spec §5).")
@click.option("--reg-data", type=click.Path(path_type=Path), help="Dataset whose audio drives R_sync.")
@click.option("--audio-init", type=click.Path(path_type=Path), help="Audio encoder export of `train-audio`.")
@click.option("--freeze-audio", is_flag=True, help="Keep the (pre-trained) audio encoder frozen.")
def train_command(
    decoder: Path | None,
    syncnet: Path | None,
    train_decoder: bool,
    init: Path | None,
    adapt: bool,
    reg_data: Path | None,
    audio_init: Path | None,
    freeze_audio: bool,
    **opts: Any,
) -> None:
    """Train StyleLipSync (encoders + MaLS; decoder frozen unless --train-decoder), spec §4.

    \b
    With --adapt --init MODEL (and --preset adapt): few-shot adaptation to the person in --data.
    """
    extra: dict[str, Any] = {}
    if init is not None:
        extra["init"] = str(init)
    if adapt:
        extra["adapt"] = True
    if reg_data is not None:
        extra["reg_data"] = str(reg_data)
    if decoder is not None:
        extra["decoder"] = str(decoder)
    if syncnet is not None:
        extra["syncnet"] = str(syncnet)
    if train_decoder:
        extra["train_decoder"] = True
    if audio_init is not None:
        extra["audio_init"] = str(audio_init)
    if freeze_audio:
        extra["freeze_audio"] = True
    _run("stylelipsync", opts, extra)


@click.command("export-checkpoint")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--checkpoint", type=click.Path(exists=True, path_type=Path), help="Default: the latest.")
@click.option("--out", required=True, type=click.Path(path_type=Path))
def export_command(run_dir: Path, checkpoint: Path | None, out: Path) -> None:
    """Write the deliverable weights of a training checkpoint (save_pretrained format, no optimiser)."""
    export_checkpoint = _runs_module().export_checkpoint
    _logging()
    try:
        path = export_checkpoint(run_dir, out, checkpoint)
    except (StyleLipSyncError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    click.echo(f"exported {path}")


TRAINING_COMMANDS = [
    preprocess_command,
    train_audio_command,
    train_syncnet_command,
    train_stylegan_command,
    train_command,
    export_command,
]
