"""`stylelipsync batch JOBS.csv`: run a jobs CSV locally or on a Ray cluster, resumably (docs/batch.md).

The command is registered by `stylelipsync.cli`; it imports neither torch nor Ray.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from stylelipsync.batch.jobs import Job
from stylelipsync.cli_common import generate_option, model_options, resolve_engine, user_errors

BATCH_EXAMPLES = """
\b
Examples:
  stylelipsync batch jobs.csv                                  # bank engine, here, one job after another
  stylelipsync batch jobs.csv -c model_dir --ray auto          # a local Ray instance, one worker per CPU
  stylelipsync batch jobs.csv -c /shared/model --ray head-node:6379 --workers 8 --gpus-per-worker 1
\b
jobs.csv has the columns video,audio,output (paths relative to its folder) and, optionally, generate
options per row (engine, bank_video, fps, loop, trim, keep_silence, face_index, bbox, reference_frame,
batch_size, crop_output, overwrite). Results go to jobs.results.csv; run the same command again to resume.
"""

RAY_ONLY = ("workers", "cpus_per_worker", "gpus_per_worker", "retries")


@click.command(epilog=BATCH_EXAMPLES)
@click.argument("jobs_csv", metavar="JOBS.csv", type=click.Path(path_type=Path))
@click.option(
    "--ray",
    "ray_address",
    metavar="auto|ADDRESS",
    help="Run on a Ray cluster: 'auto' (the cluster this machine is part of, else a new local one), a head "
    "node's HOST:PORT, or ray://HOST:10001. Without it the jobs run here, one after another.",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    help="Ray workers (each loads the model once). Default: as many as the cluster's CPUs (or GPUs) allow.",
)
@click.option(
    "--cpus-per-worker",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="CPUs Ray reserves for each worker (also its torch threads).",
)
@click.option(
    "--gpus-per-worker",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="GPUs Ray reserves for each worker (fractions share a GPU).",
)
@click.option(
    "--retries",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="Times a job runs again after its Ray worker died (killed, out of memory). Jobs failing on their "
    "input are not retried.",
)
@click.option("--retry-failed", is_flag=True, help="Run again the jobs an earlier run recorded as failed.")
@model_options
@generate_option("batch_size")
@generate_option("fps")
@generate_option("loop")
@generate_option("trim")
@generate_option("keep_silence")
@generate_option("overwrite")
@user_errors
def batch(
    jobs_csv: Path,
    ray_address: str | None,
    workers: int | None,
    cpus_per_worker: float,
    gpus_per_worker: float,
    retries: int,
    retry_failed: bool,
    engine: str | None,
    checkpoint: Path | None,
    w_avg: Path | None,
    device: str,
    **generate_opts: Any,
) -> None:
    """Dub every row of JOBS.csv; resumable, locally or on a Ray cluster (see docs/batch.md).

    The command-line generate options (and the engine) apply to every row; a row's option columns override
    them.
    """
    ctx = click.get_current_context()
    engine = resolve_engine(engine, checkpoint, w_avg)
    if ray_address is None:
        for name in RAY_ONLY:
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT:
                raise click.UsageError(
                    f"--{name.replace('_', '-')} is for Ray workers; add --ray auto (or a cluster address)"
                )
    debug = bool(ctx.find_root().params.get("debug", False))
    from stylelipsync.batch.jobs import read_jobs
    from stylelipsync.batch.manifest import Manifest, manifest_path
    from stylelipsync.batch.report import BarReporter
    from stylelipsync.batch.runner import run_batch
    from stylelipsync.errors import CheckpointError
    from stylelipsync.pipelines.engines import EngineSpec
    from stylelipsync.pipelines.options import GenerateOptions

    try:
        common = GenerateOptions().updated(engine=engine, **generate_opts)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    jobs = read_jobs(
        jobs_csv, common, warn=lambda text: click.secho(f"warning: {text}", fg="yellow", err=True)
    )
    for path in (checkpoint, w_avg):
        if path is not None and not path.exists():
            raise CheckpointError(f"{path} does not exist; pass a model directory or an official .pth")
    spec = EngineSpec.resolve(engine, checkpoint, w_avg)

    @contextmanager
    def local(_todo: Sequence[Job]) -> Iterator[Any]:
        from stylelipsync.batch.runner import LocalBackend
        from stylelipsync.pipelines import LipSyncPipeline

        yield LocalBackend(LipSyncPipeline.from_spec(spec, device))

    @contextmanager
    def on_ray(todo: Sequence[Job]) -> Iterator[Any]:
        from tqdm.auto import tqdm

        from stylelipsync.batch.runner import RayBackend
        from stylelipsync.remote.ray_pool import RayPool, default_workers, ray_connection

        assert ray_address is not None
        with ray_connection(ray_address, debug) as context:
            count = workers or min(len(todo), default_workers(cpus_per_worker, gpus_per_worker))
            url = getattr(context, "dashboard_url", None)
            tqdm.write(
                f"Ray: starting {count} worker(s)" + (f"; dashboard: http://{url}" if url else ""),
                file=sys.stderr,
            )
            pool = RayPool(count, spec, device, cpus_per_worker, gpus_per_worker)
            with pool.start():
                yield RayBackend(pool, retries)

    path = manifest_path(jobs_csv)
    with Manifest(path) as manifest:
        try:
            summary = run_batch(
                jobs, on_ray if ray_address else local, BarReporter(debug), manifest, retry_failed
            )
        except KeyboardInterrupt:
            click.secho(
                f"interrupted: finished jobs are recorded in {path}; run the same command again to resume",
                fg="yellow",
                err=True,
            )
            sys.exit(130)
    if summary.failed:
        sys.exit(1)
