"""Command-line entry point: `stylelipsync <command>`.

User errors (`StyleLipSyncError`) print one clear message and exit with the error's code; a traceback is shown
only with `--debug`.
"""

from __future__ import annotations

import csv
import os
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from stylelipsync import __version__
from stylelipsync.errors import StyleLipSyncError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn project errors into a one-line message and exit code; keep tracebacks for `--debug`."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return func(*args, **kwargs)
        except StyleLipSyncError as exc:
            if debug:
                traceback.print_exc()
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.secho("interrupted: no output was written", fg="yellow", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="stylelipsync")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """Dub a talking-face video to new speech (StyleLipSync)."""


def _parse_bbox(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        box = tuple(int(float(v)) for v in value.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise click.BadParameter("expected X0,Y0,X1,Y1 in pixels of the first frame, e.g. 100,80,420,460")
    return box


@cli.command()
@click.option("--video", "-v", type=click.Path(path_type=Path), help="Video or single photo of the face.")
@click.option(
    "--audio",
    "-a",
    type=click.Path(path_type=Path),
    help="Speech: any audio file, or a video whose audio is used.",
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Output MP4 (H.264 + AAC).")
@click.option(
    "--jobs",
    type=click.Path(path_type=Path),
    help="CSV with columns video,audio,output: run many jobs, continuing past failures.",
)
@click.option(
    "--checkpoint",
    "-c",
    type=click.Path(path_type=Path),
    help="Model directory, or an official .pth (with --w-avg). Default: the shipped model.",
)
@click.option(
    "--w-avg",
    type=click.Path(path_type=Path),
    help="Official w_avg.pth to go with an official .pth checkpoint.",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(1, 256), default=8, show_default=True, help="Frames per network call."
)
@click.option(
    "--fps",
    type=click.FloatRange(1, 120),
    help="Output frame rate. Default: the input video's (25 for a photo).",
)
@click.option(
    "--face-index", type=click.IntRange(0), help="With several faces: 0 = largest, 1 = next largest, …"
)
@click.option(
    "--bbox", callback=_parse_bbox, help="X0,Y0,X1,Y1: dub the face inside this box of the first frame."
)
@click.option(
    "--reference-frame",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Frame used as the identity reference.",
)
@click.option(
    "--loop",
    type=click.Choice(["pingpong", "forward", "hold"]),
    default="pingpong",
    show_default=True,
    help="How to extend a video shorter than the audio.",
)
@click.option(
    "--trim/--no-trim",
    default=True,
    show_default=True,
    help="--trim: output lasts as long as the audio. "
    "--no-trim: keep the whole video; the mouth closes after the audio ends.",
)
@click.option(
    "--keep-silence",
    is_flag=True,
    help="Let the audio drive the mouth during silence too (default: close the mouth on silent stretches).",
)
@click.option(
    "--crop-output", type=click.Path(path_type=Path), help="Also write the generated face crops to this MP4."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@user_errors
def generate(**opts: Any) -> None:
    """Dub VIDEO (or a photo) with AUDIO and write OUTPUT.

    \b
    Example:
      stylelipsync generate --video person.mp4 --audio speech.wav --output dubbed.mp4
      stylelipsync generate --jobs jobs.csv          # many jobs: CSV with video,audio,output
    """
    from stylelipsync.pipelines.lipsync import GenerateOptions, LipSyncPipeline

    jobs: Path | None = opts.pop("jobs")
    if jobs is None and not (opts["video"] and opts["audio"] and opts["output"]):
        raise click.UsageError("give --video, --audio and --output (or --jobs CSV)")
    pipe = LipSyncPipeline.from_pretrained(
        opts.pop("checkpoint"), w_avg=opts.pop("w_avg"), device=opts.pop("device")
    )
    common = GenerateOptions(
        batch_size=opts["batch_size"],
        fps=opts["fps"],
        face_index=opts["face_index"],
        bbox=opts["bbox"],
        reference_frame=opts["reference_frame"],
        loop=opts["loop"],
        trim=opts["trim"],
        keep_silence=opts["keep_silence"],
        crop_output=opts["crop_output"],
        overwrite=opts["overwrite"],
    )
    if jobs is None:
        result = pipe(opts["video"], opts["audio"], opts["output"], options=common, progress=True)
        click.echo(result.summary())
        return
    _run_jobs(pipe, jobs, common)


def _run_jobs(pipe: Any, jobs: Path, common: Any) -> None:
    """Run every row of a jobs CSV; report each; exit 1 if any failed."""
    from dataclasses import replace

    from stylelipsync.errors import MediaError

    try:
        with open(jobs, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise MediaError(f"cannot read jobs file {jobs}: {exc.strerror}") from exc
    missing = {"video", "audio", "output"} - set(rows[0].keys() if rows else [])
    if not rows or missing:
        raise MediaError(
            f"jobs file {jobs} needs a header with columns video,audio,output and at least one row"
        )
    base = jobs.parent
    failed = 0
    for i, row in enumerate(rows, 1):
        paths = [
            Path(row[k]) if Path(row[k]).is_absolute() else base / row[k]
            for k in ("video", "audio", "output")
        ]
        label = f"[{i}/{len(rows)}] {paths[2]}"
        try:
            options = replace(common, crop_output=None)
            result = pipe(paths[0], paths[1], paths[2], options=options, progress=True)
            click.echo(f"{label}: done ({result.frames} frames, {result.seconds:.1f} s)")
        except StyleLipSyncError as exc:
            failed += 1
            click.secho(f"{label}: failed: {exc}", fg="red", err=True)
    click.echo(f"{len(rows) - failed} of {len(rows)} jobs done, {failed} failed")
    if failed:
        sys.exit(1)


import stylelipsync.training.cli  # noqa: E402, F401  (registers preprocess / train-* / export-checkpoint)
from stylelipsync.evaluation.cli import evaluate  # noqa: E402

cli.add_command(evaluate)


def _hide_native_stderr() -> None:
    """Keep Python's stderr (messages, progress bars) but drop what native libraries write to fd 2.

    MediaPipe's C++ runtime prints start-up warnings straight to the file descriptor; users should not see
    them. `--debug` keeps them.
    """
    if "--debug" in sys.argv[1:]:
        return
    try:
        sys.stderr.flush()
        python_stderr = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = os.fdopen(
            python_stderr, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace"
        )
    except OSError:
        return


def main() -> None:
    """Console-script entry point."""
    _hide_native_stderr()
    cli()


if __name__ == "__main__":
    main()
