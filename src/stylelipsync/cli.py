"""Command-line entry point: `stylelipsync <command>`.

The root group and `generate` live here; every other command is a plain click command in its own
package's `cli` module, imported and registered below (one direction: root → sub; shared option groups come
from `stylelipsync.cli_common`). User errors (`StyleLipSyncError`) print one clear
message and exit with the error's code; a traceback is shown only with `--debug`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from stylelipsync import __version__
from stylelipsync.adaptation.cli import adapt_command
from stylelipsync.batch.cli import batch
from stylelipsync.cli_common import face_options, generate_option, model_options, resolve_engine, user_errors
from stylelipsync.evaluation.cli import evaluate
from stylelipsync.live.cli import live
from stylelipsync.serve.cli import serve
from stylelipsync.training.cli import TRAINING_COMMANDS

if TYPE_CHECKING:
    from stylelipsync.batch.jobs import Job
    from stylelipsync.jobrun import DubbingPipeline

EXTRAS_HELP = """
\b
Extras: the base install (pip install -e .) runs generate, serve, batch, evaluate and preprocess.
  pip install -e ".[train]"   also: adapt, train-audio, train-syncnet, train-stylegan, train,
                              export-checkpoint
  pip install -e ".[ray]"     batch --ray, serve --ray
"""


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}, epilog=EXTRAS_HELP
)
@click.version_option(__version__, prog_name="stylelipsync")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """Dub a talking-face video to new speech (StyleLipSync)."""


GENERATE_EXAMPLES = """
\b
Examples:
  stylelipsync generate -v person.mp4 -a speech.wav -o dubbed.mp4                # bank engine
  stylelipsync generate -v photo.jpg -a speech.mp3 -o talking.mp4 --bank-video person.mp4
  stylelipsync generate -v person.mp4 -a speech.wav -o dubbed.mp4 -c model_dir   # stylelipsync engine
  stylelipsync generate --jobs jobs.csv                    # CSV columns: video,audio,output[,engine,...]
"""


@cli.command(epilog=GENERATE_EXAMPLES)
@click.option("--video", "-v", type=click.Path(path_type=Path), help="Video or single photo of the face.")
@click.option(
    "--audio",
    "-a",
    type=click.Path(path_type=Path),
    help="Speech: any audio file, or a video whose audio track is used.",
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Output MP4 (H.264 + AAC).")
@click.option(
    "--jobs",
    type=click.Path(path_type=Path),
    help="CSV with columns video,audio,output (relative to the CSV's folder) and optional option columns "
    "(engine, bank_video, fps, ...; docs/batch.md): run many jobs, continuing past failures.",
)
@model_options
@generate_option("batch_size")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default="fp32",
    show_default=True,
    help="Network precision: bf16 autocast (fast on GPUs and CPUs with AVX512-BF16/AMX), fp16 (CUDA only).",
)
@click.option(
    "--compile",
    "compile_model",
    is_flag=True,
    help="torch.compile the face encoder and decoder (slow first chunk; falls back to eager if it fails).",
)
@click.option(
    "--threads", type=click.IntRange(1), help="CPU threads for the networks. Default: all usable cores."
)
@generate_option("fps")
@face_options
@generate_option("reference_frame")
@generate_option("loop")
@generate_option("trim")
@generate_option("keep_silence")
@generate_option("crop_output")
@generate_option("bank_video")
@generate_option("overwrite")
@user_errors
def generate(**opts: Any) -> None:
    """Dub VIDEO (or a photo) with AUDIO and write OUTPUT (see docs/generate.md)."""
    from stylelipsync.startup_trace import mark

    mark("command parsed")
    jobs: Path | None = opts.pop("jobs")
    paths = (opts.pop("video"), opts.pop("audio"), opts.pop("output"))
    opts["engine"] = resolve_engine(opts["engine"], opts["checkpoint"], opts["w_avg"])
    _check_generate_usage(jobs, paths, opts)
    debug = click.get_current_context().find_root().params.get("debug", False)
    if jobs is None:
        _precheck(*paths, opts)
    from stylelipsync.pipelines import GenerateOptions, LipSyncPipeline

    mark("pipeline imported")
    checkpoint, w_avg, device = opts.pop("checkpoint"), opts.pop("w_avg"), opts.pop("device")
    precision, compile_model, threads = opts.pop("precision"), opts.pop("compile_model"), opts.pop("threads")
    engine = opts["engine"]
    opts["bank_video"] = tuple(str(p) for p in opts["bank_video"])
    try:
        common = GenerateOptions().updated(**opts)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    rows = None
    if jobs is not None:
        from stylelipsync.batch.jobs import read_jobs

        rows = read_jobs(
            jobs, common, warn=lambda text: click.secho(f"warning: {text}", fg="yellow", err=True)
        )
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    pipe = LipSyncPipeline.from_pretrained(
        checkpoint, w_avg=w_avg, device=device, precision=precision, compile=compile_model, engine=engine
    )
    if rows is not None:
        _run_jobs(pipe, rows, debug)
        return
    result = pipe(*paths, options=common, progress=True)
    click.echo(result.summary())
    if debug:
        click.echo(f"stages: {result.stage_report()}")


def _check_generate_usage(jobs: Path | None, paths: tuple[Path | None, ...], opts: dict[str, Any]) -> None:
    """Either --jobs, or all of --video, --audio and --output; --bank-video only with the bank engine."""
    if opts["bank_video"] and opts["engine"] != "bank":
        raise click.UsageError(
            "--bank-video goes with the bank engine: drop it, or drop --checkpoint / --engine stylelipsync"
        )
    if jobs is not None:
        if any(paths) or opts["crop_output"]:
            raise click.UsageError(
                "--jobs runs the CSV's rows; do not combine it with --video/--audio/--output/--crop-output"
            )
        return
    if not all(paths):
        raise click.UsageError("give --video, --audio and --output (or --jobs CSV)")
    if opts["face_index"] is not None and opts["bbox"] is not None:
        raise click.UsageError("give --face-index or --bbox, not both")


def _precheck(video: Path, audio: Path, output: Path, opts: dict[str, Any]) -> None:
    """Fail on missing inputs or an unusable output path before spending time loading the model."""
    from stylelipsync.media.container import check_file
    from stylelipsync.pipelines.lipsync import check_output

    check_file(video)
    check_file(audio)
    for extra in opts["bank_video"]:
        check_file(extra)
    check_output(output, [video, audio, *opts["bank_video"]], opts["overwrite"])


def _run_jobs(pipe: DubbingPipeline, jobs: list[Job], debug: bool) -> None:
    """Run the rows of a jobs CSV with one loaded model (`stylelipsync.batch`); exit 1 if any failed."""
    from contextlib import nullcontext

    from stylelipsync.batch.report import EchoReporter
    from stylelipsync.batch.runner import LocalBackend, run_batch

    summary = run_batch(jobs, lambda _todo: nullcontext(LocalBackend(pipe)), EchoReporter(debug))
    if summary.failed:
        sys.exit(1)


for _command in (batch, serve, live, evaluate, adapt_command, *TRAINING_COMMANDS):
    cli.add_command(_command)


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
