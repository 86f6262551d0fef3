"""`stylelipsync evaluate`: score generated videos.

Metrics: LSE, sync, CSIM, PSNR/SSIM/LPIPS, LMD, mouth sharpness, mouth jitter and motion, FID, silence leak.
"""

from __future__ import annotations

from pathlib import Path

import click

from stylelipsync.cli_common import user_errors
from stylelipsync.evaluation import DEFAULT_METRICS, METRICS

_PATHS = click.Path(path_type=Path)


def _metrics(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    names = [m.strip().lower() for v in value for m in v.split(",") if m.strip()] or list(DEFAULT_METRICS)
    if "all" in names:
        return METRICS
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from {', '.join(METRICS)} or all")
    return tuple(dict.fromkeys(names))


@click.command()
@click.option(
    "--generated",
    "-g",
    multiple=True,
    required=True,
    type=_PATHS,
    help="Generated video(s) or folder(s) of videos.",
)
@click.option(
    "--reference",
    "-r",
    multiple=True,
    type=_PATHS,
    help="Reference (source) video(s)/image, or folder; paired by file name, order, or one for all.",
)
@click.option(
    "--audio",
    "-a",
    multiple=True,
    type=_PATHS,
    help="Driving audio (default: each generated video's own audio track).",
)
@click.option(
    "--silent",
    multiple=True,
    type=_PATHS,
    help="Same videos dubbed with digital silence: adds the silence-leak columns.",
)
@click.option(
    "--speaker-video",
    multiple=True,
    type=_PATHS,
    help="When the driving audio comes from a talking video: that video. Adds sync_speaker, the correlation "
    "of the generated mouth opening with the speaker's real one (no audio model involved).",
)
@click.option(
    "--metrics",
    "-m",
    multiple=True,
    callback=_metrics,
    help=f"Comma list from {', '.join(METRICS)}, or all. Default: {','.join(DEFAULT_METRICS)}.",
)
@click.option(
    "--syncnet-weights", type=_PATHS, help="syncnet_v2.model of syncnet_python (needed for LSE-D/LSE-C)."
)
@click.option(
    "--lse-mode",
    type=click.Choice(["wild", "lrs"]),
    default="wild",
    show_default=True,
    help="wild: track + protocol crop; lrs: the videos are face crops.",
)
@click.option(
    "--no-lse-resize",
    is_flag=True,
    help="LRS mode without the 224² resize (original syncnet_python; needs 224² videos).",
)
@click.option(
    "--arcface-weights", type=_PATHS, help="insightface arcface_torch IResNet state dict: adds csim_arcface."
)
@click.option("--arcface-arch", type=click.Choice(["r100", "r50"]), default="r100", show_default=True)
@click.option("--lpips-weights", type=_PATHS, help="LPIPS-VGG state dict (needed for lpips).")
@click.option(
    "--fid-weights",
    type=_PATHS,
    help="pytorch-fid Inception-v3 weights pt_inception-2015-12-05-6726825d.pth (needed for fid).",
)
@click.option("--cache-dir", type=_PATHS, help="Folder to cache face tracks in (speeds up re-runs).")
@click.option(
    "--max-id-frames",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="Frames sampled per video for CSIM and LPIPS.",
)
@click.option(
    "--frame-step",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="PSNR/SSIM, mouth sharpness and FID on every N-th frame.",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Device for SyncNet and the FID Inception.",
)
@click.option(
    "--out",
    "-o",
    type=_PATHS,
    default=Path("results.json"),
    show_default=True,
    help="JSON results; a CSV is written beside it.",
)
@click.option(
    "--plot", type=_PATHS, help="PNG of per-frame sync confidence and mouth opening vs audio energy."
)
def evaluate(**opts: object) -> None:
    """Score generated videos and print a table (per video, then mean ± std).

    \b
    Examples:
      stylelipsync evaluate -g out/ -r src/ --metrics lse,sync,csim,psnr,ssim,lmd \\
          --syncnet-weights syncnet_v2.model --out results.json --plot sync.png
      stylelipsync evaluate -g dubbed.mp4 --metrics sync          # no weights needed
      stylelipsync evaluate -g dubbed.mp4 -g input.mp4 -m sharpness,jitter   # compare the two rows
    """
    user_errors(_run)(**opts)


def _run(**opts: object) -> None:
    from stylelipsync.evaluation.jobs import make_jobs
    from stylelipsync.evaluation.report import format_table, write_csv, write_json
    from stylelipsync.evaluation.runner import EvalConfig, Evaluator

    config = EvalConfig(
        metrics=opts["metrics"],  # type: ignore[arg-type]
        syncnet_weights=opts["syncnet_weights"],  # type: ignore[arg-type]
        lse_mode=str(opts["lse_mode"]),
        lse_resize=not opts["no_lse_resize"],
        arcface_weights=opts["arcface_weights"],  # type: ignore[arg-type]
        arcface_arch=str(opts["arcface_arch"]),
        lpips_weights=opts["lpips_weights"],  # type: ignore[arg-type]
        fid_weights=opts["fid_weights"],  # type: ignore[arg-type]
        cache_dir=opts["cache_dir"],  # type: ignore[arg-type]
        max_id_frames=int(opts["max_id_frames"]),  # type: ignore[call-overload]
        frame_step=int(opts["frame_step"]),  # type: ignore[call-overload]
        device=str(opts["device"]),
    )
    jobs = make_jobs(
        opts["generated"],  # type: ignore[arg-type]
        opts["reference"],  # type: ignore[arg-type]
        opts["audio"],  # type: ignore[arg-type]
        opts["silent"],  # type: ignore[arg-type]
        opts["speaker_video"],  # type: ignore[arg-type]
    )
    evaluator = Evaluator(config)
    for metric, why in evaluator.unavailable.items():
        click.secho(f"{metric}: unavailable: {why}", fg="yellow", err=True)
    results = []
    for i, job in enumerate(jobs, 1):
        click.echo(f"[{i}/{len(jobs)}] {job.generated}", err=True)
        result = evaluator.evaluate(job)
        for note in result.notes:
            click.echo(f"    note: {note}", err=True)
        results.append(result)
    set_result = evaluator.finish()
    for note in set_result.notes:
        click.echo(f"note: {note}", err=True)
    columns = evaluator.columns(results)
    click.echo(format_table(results, columns, set_result=set_result))
    out: Path = opts["out"]  # type: ignore[assignment]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results, columns, config, evaluator.unavailable, set_result)
    write_csv(out.with_suffix(".csv"), results, columns, set_result)
    click.echo(f"wrote {out} and {out.with_suffix('.csv')}", err=True)
    if opts["plot"] is not None:
        from stylelipsync.evaluation.plot import plot_results

        click.echo(f"wrote {plot_results(results, opts['plot'])}", err=True)  # type: ignore[arg-type]
