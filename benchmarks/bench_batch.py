"""Throughput of `stylelipsync batch --ray` (jobs/hour with 1 and 2 workers) and its per-job overhead
against local `generate` (issue #13; target: at most 5 % on jobs of 10 s of video or more).

1. Cuts `--seconds` of video (with its own speech) from each of three shared talking clips of 11-14 s, and
   makes `--jobs` jobs from them (each clip dubbed with another clip's speech).
2. Local baseline: one `LipSyncPipeline` in this process runs the jobs one after another (`--threads`
   torch threads, as each Ray worker gets); the per-job time is the wall time of each call.
3. For each worker count in `--workers`: a pool of that many Ray actors is started and made ready (its
   start-up is reported apart: it is paid once per batch), then the same jobs run through `run_batch`
   with a results manifest, as `stylelipsync batch --ray` runs them; the batch's wall time gives jobs/hour.
4. Overhead = (per-job wall time of the 1-worker Ray batch − local per-job time) / local per-job time.

Prints a table and a JSON line; writes nothing outside a temporary work folder (`--keep` keeps it). On a
2-core machine, 2 workers of `--threads 1` use both cores:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_batch.py --jobs 6 --seconds 10 --workers 1,2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CLIPS = ("pcavs_Audio_Source_00104.mp4", "deepavsr_00016.mp4", "pcavs_Pose_Source_741400163.mp4")


def make_jobs(work: Path, count: int, seconds: float) -> list[tuple[Path, Path]]:
    """`count` (video, speech) pairs over the cut clips, each clip with the next one's speech."""
    from stylelipsync.media import cut_clip

    clips = []
    for name in CLIPS:
        source = MEDIA / name
        if not source.is_file():
            sys.exit(f"missing {source}: the benchmark needs ../shared/media beside the checkout")
        clips.append(cut_clip(source, work / "clips" / name, seconds))
    return [(clips[i % 3], clips[(i + 1) % 3]) for i in range(count)]


def write_csv(folder: Path, pairs: list[tuple[Path, Path]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["video,audio,output"] + [f"{v},{a},out/job{i}.mp4" for i, (v, a) in enumerate(pairs)]
    path = folder / "jobs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_local(checkpoint: str | None, pairs: list[tuple[Path, Path]], folder: Path, threads: int) -> dict:
    """Local generate, one pipeline, jobs one after another."""
    import torch

    from stylelipsync.pipelines import LipSyncPipeline

    torch.set_num_threads(threads)
    pipe = LipSyncPipeline.from_pretrained(checkpoint, device="cpu")
    per_job, frames = [], 0
    for i, (video, audio) in enumerate(pairs):
        start = time.perf_counter()
        result = pipe(video, audio, folder / f"local{i}.mp4")
        per_job.append(time.perf_counter() - start)
        frames += result.frames
    return {"per_job_s": per_job, "frames": frames}


def run_ray(
    checkpoint: str | None, pairs: list[tuple[Path, Path]], folder: Path, workers: int, threads: int
) -> dict:
    """The same jobs as a Ray batch on `workers` actors (start-up timed apart)."""
    from stylelipsync.batch.jobs import read_jobs
    from stylelipsync.batch.manifest import Manifest, manifest_path
    from stylelipsync.batch.runner import RayBackend, RayPool, run_batch
    from stylelipsync.pipelines import GenerateOptions

    jobs_csv = write_csv(folder, pairs)
    jobs = read_jobs(jobs_csv, GenerateOptions())
    start = time.perf_counter()
    with RayPool(workers, checkpoint, device="cpu", cpus_per_worker=threads).start() as pool:
        startup = time.perf_counter() - start
        start = time.perf_counter()
        with Manifest(manifest_path(jobs_csv)) as manifest:
            summary = run_batch(jobs, lambda _todo: nullcontext(RayBackend(pool)), None, manifest)
        wall = time.perf_counter() - start
    results = manifest_path(jobs_csv).read_text().splitlines()[1:]
    in_worker = [float(line.split(",")[2]) for line in results]
    if summary.failed:
        sys.exit(f"{summary.failed} Ray job(s) failed: see {manifest_path(jobs_csv)}")
    return {"workers": workers, "startup_s": startup, "wall_s": wall, "in_worker_s": in_worker}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", help="model directory (default: the shipped model)")
    parser.add_argument("--jobs", type=int, default=6, help="jobs per configuration")
    parser.add_argument("--seconds", type=float, default=10.0, help="video (and speech) per job, at most 11")
    parser.add_argument("--workers", default="1,2", help="comma-separated Ray worker counts")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (= CPUs) per worker and locally"
    )
    parser.add_argument("--ray", default="auto", help="Ray address (auto: a local instance)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    checkpoint = os.path.abspath(args.checkpoint) if args.checkpoint else None

    work = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        pairs = make_jobs(work, args.jobs, args.seconds)
        local = run_local(checkpoint, pairs, work / "local", args.threads)
        import ray

        from stylelipsync.batch.runner import connect_ray

        if args.ray == "auto":
            cpus = max(counts) * args.threads
            ray.init(
                num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
            )
        else:
            connect_ray(args.ray)
        runs = [run_ray(checkpoint, pairs, work / f"ray{w}", w, args.threads) for w in counts]
        ray.shutdown()
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    local_job = statistics.mean(local["per_job_s"])
    report = {
        "jobs": args.jobs,
        "seconds_per_job": args.seconds,
        "threads": args.threads,
        "local": {"per_job_s": round(local_job, 2), "jobs_per_hour": round(3600 / local_job, 1)},
        "ray": [],
    }
    print(f"{args.jobs} jobs of {args.seconds:g} s of video, {args.threads} torch thread(s) per worker")
    print(f"local generate: {local_job:.2f} s/job, {3600 / local_job:.1f} jobs/hour")
    for run in runs:
        per_job = run["wall_s"] / args.jobs
        entry = {
            "workers": run["workers"],
            "startup_s": round(run["startup_s"], 1),
            "wall_s": round(run["wall_s"], 1),
            "jobs_per_hour": round(3600 * args.jobs / run["wall_s"], 1),
            "in_worker_per_job_s": round(statistics.mean(run["in_worker_s"]), 2),
        }
        line = (
            f"ray, {run['workers']} worker(s): {entry['jobs_per_hour']} jobs/hour "
            f"(batch {run['wall_s']:.1f} s, start-up {run['startup_s']:.1f} s apart)"
        )
        if run["workers"] == 1:
            entry["overhead_pct"] = round(100 * (per_job - local_job) / local_job, 2)
            line += (
                f"; per job {per_job:.2f} s, overhead vs local {entry['overhead_pct']:+.2f} % (target <= 5 %)"
            )
        report["ray"].append(entry)
        print(line)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
