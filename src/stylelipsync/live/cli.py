"""`stylelipsync live`: prepare a face once, then dub speech from the browser in real time (docs/live.md).

The command is registered by `stylelipsync.cli`; FastAPI, uvicorn and the bank engine
are imported only when the command runs. `--fps`, `--keep-silence`, `--bank-video`, `--face-index` and
`--bbox` mean what they mean for `generate` and come from the same definitions (`GenerateOptions`).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from stylelipsync.cli_common import address_options, face_options, generate_option, is_loopback, user_errors

LIVE_EXAMPLES = """
\b
Examples:
  stylelipsync live --video person.mp4                    # then open http://127.0.0.1:8765/
  stylelipsync live --video photo.jpg --bank-video person.mp4 --record session.mp4
"""


@click.command(epilog=LIVE_EXAMPLES)
@click.option(
    "--video",
    "-v",
    required=True,
    type=click.Path(path_type=Path),
    help="Video (or photo) of the face to dub; it is played forth and back.",
)
@generate_option("bank_video")
@address_options(default_port=8765)
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write each session's dubbed stream with its audio to this MP4 (then NAME-2.mp4, …).",
)
@click.option(
    "--lag",
    type=click.IntRange(0, 25),
    default=2,
    show_default=True,
    help="Frames the mouth selection waits for before deciding (smoother mouths, more delay).",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=60,
    show_default=True,
    help="Use at most this much of the video.",
)
@generate_option("fps")
@face_options
@click.option(
    "--max-latency",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Seconds a frame may lag its audio before it is sent without a picture, so a machine too slow "
    "for the stream catches up (0: never; latency then grows on a slow machine).",
)
@generate_option("keep_silence")
@user_errors
def live(
    video: Path,
    bank_video: tuple[Path, ...],
    host: str,
    port: int,
    record: Path | None,
    lag: int,
    max_seconds: float,
    fps: float | None,
    face_index: int | None,
    bbox: tuple[int, int, int, int] | None,
    max_latency: float,
    keep_silence: bool,
) -> None:
    """Dub a face live from speech: your microphone or a speech file, in a browser page (CPU, real time)."""
    import uvicorn

    from stylelipsync.formats import OUTPUT_SUFFIXES
    from stylelipsync.live.face import LiveFace
    from stylelipsync.live.server import LiveServer, LiveSettings

    if not is_loopback(host):
        click.secho(
            f"warning: serving on {host}: anyone who can reach this machine can use the live page.",
            fg="yellow",
            err=True,
        )
    if record is not None and record.suffix.lower() not in OUTPUT_SUFFIXES:
        raise click.BadParameter(f"{record}: use a .mp4 file name", param_hint="--record")
    start = time.perf_counter()
    face = LiveFace.prepare(
        video,
        bank_videos=bank_video,
        fps=fps,
        max_seconds=max_seconds,
        face_index=face_index,
        bbox=bbox,
        progress=True,
    )
    try:
        click.echo(
            f"prepared {video.name} in {time.perf_counter() - start:.1f} s: {len(face.bank)} mouths, "
            f"{face.width}x{face.height} at {face.fps:g} fps",
            err=True,
        )
        if face.bank.poor_coverage:
            click.secho(
                f"warning: the mouth bank has poor coverage (its mouths open {face.bank.coverage:.0%} as "
                "much as a person talking): mouths are reshaped and their interior painted. For real mouths, "
                "add a video of the person talking with --bank-video.",
                fg="yellow",
                err=True,
            )
        settings = LiveSettings(
            lag=lag, record=record, keep_silence=keep_silence, max_latency=max_latency or None
        )
        server = LiveServer(face, settings)
        click.echo(f"live on http://{host}:{port}/ (Ctrl+C to stop)", err=True)
        uvicorn.run(server.app(), host=host, port=port, log_level="warning", ws_max_size=1 << 20)
    finally:
        face.close()
