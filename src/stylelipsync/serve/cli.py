"""`stylelipsync serve`: run the HTTP dubbing service (see docs/serve.md).

The command is registered by `stylelipsync.cli`; FastAPI and uvicorn are imported only
when the command runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from stylelipsync.cli_common import address_options, is_loopback, model_options, resolve_engine, user_errors

SERVE_EXAMPLES = """
\b
Examples:
  stylelipsync serve                                   # http://127.0.0.1:8000, bank engine
  stylelipsync serve -c model_dir --workers 2 --data-dir /srv/dubbing
  STYLELIPSYNC_TOKEN=secret stylelipsync serve --host 0.0.0.0
  curl -F video=@face.mp4 -F audio=@speech.wav http://127.0.0.1:8000/v1/jobs
"""


@click.command(epilog=SERVE_EXAMPLES)
@address_options(default_port=8000)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the job database, uploads and results. Default: the per-user data folder "
    "(~/.local/share/stylelipsync on Linux).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Dubbing processes; each loads the model once and runs one job at a time.",
)
@model_options
@click.option(
    "--ray",
    "ray_address",
    metavar="auto|ADDRESS",
    help="Run the jobs on Ray workers (one per --workers) instead of local processes: a cluster's HOST:PORT, "
    "or auto for the one this machine is part of (`ray start --head`). --data-dir must be on storage every "
    "node sees (docs/batch.md).",
)
@click.option(
    "--token",
    envvar="STYLELIPSYNC_TOKEN",
    help="Require 'Authorization: Bearer TOKEN' on every /v1 call (or set STYLELIPSYNC_TOKEN).",
)
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=500,
    show_default=True,
    help="Largest upload (both files together), enforced while it streams.",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=600,
    show_default=True,
    help="Longest output accepted (the speech's length), in seconds.",
)
@user_errors
def serve(
    host: str,
    port: int,
    data_dir: Path | None,
    workers: int,
    engine: str | None,
    checkpoint: Path | None,
    w_avg: Path | None,
    device: str,
    ray_address: str | None,
    token: str | None,
    max_upload_mb: float,
    max_seconds: float,
) -> None:
    """Serve dubbing over HTTP: a REST API (/v1, documented at /docs) and a web page (/)."""
    import uvicorn

    from stylelipsync.serve.app import create_app
    from stylelipsync.serve.service import JobService, ServeSettings, default_data_dir

    engine = resolve_engine(engine, checkpoint, w_avg)
    token = token or None
    if not is_loopback(host) and token is None:
        click.secho(
            f"warning: serving on {host} without a token: anyone who can reach this machine can upload and "
            "run jobs. Pass --token (or set STYLELIPSYNC_TOKEN).",
            fg="yellow",
            err=True,
        )
    if checkpoint is not None and not checkpoint.exists():
        from stylelipsync.errors import CheckpointError

        raise CheckpointError(
            f"checkpoint {checkpoint} does not exist; pass a model directory or an official .pth"
        )
    settings = ServeSettings(
        data_dir=(data_dir or default_data_dir()).expanduser(),
        workers=workers,
        checkpoint=checkpoint,
        w_avg=w_avg,
        device=device,
        token=token,
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_seconds=max_seconds,
        ray_address=ray_address,
        engine=engine,
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    where = (
        f"on {workers} Ray worker(s) at {ray_address}" if ray_address else f"in {workers} worker process(es)"
    )
    click.echo(f"starting the {engine} engine {where}; data in {settings.data_dir}", err=True)
    service = JobService(settings)
    service.start()
    try:
        click.echo(f"serving on http://{host}:{port}/ (API page: /docs)", err=True)
        uvicorn.run(create_app(settings, service), host=host, port=port, log_level="info")
    finally:
        service.stop()
