"""Throughput of `stylelipsync batch --ray` (1 and 2 workers) and its per-job overhead against local
`generate`, side by side in one run (issues #13, #24; targets: 1-worker overhead at most 5 %, 2 workers on
2 cores at least 1.3x local).

1. Cuts `--seconds` of video (with its own speech) from each of three shared talking clips of 11-14 s, and
   makes `--jobs` jobs from them (each clip dubbed with another clip's speech).
2. Loads one `LipSyncPipeline` here (and runs one job to warm it, as a worker loads before its jobs) and
   starts a local Ray instance with a 1-worker pool (start-up reported apart: paid once per batch).
3. `--rounds` times, alternately: the jobs one after another on the local pipeline, then the same jobs as a
   Ray batch through `run_batch` with a results manifest, as `stylelipsync batch --ray` runs them (and with
   `--compare-niceness`, on a 1-worker pool at Ray's default worker niceness 15, the cause of the old 6.7 %).
   Alternating keeps a machine whose load drifts from favouring one side.
4. Overhead = mean Ray batch wall / mean local batch wall - 1 (dispatch, manifest and polling included).
5. A 2-worker pool runs the jobs once, then the local pipeline once more; speed-up = local / 2-worker wall.

Prints one line per round and a JSON line; writes nothing outside a temporary work folder. On a 2-core
machine, with one torch thread per worker and locally:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_batch.py --jobs 6 --seconds 10 --rounds 2
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
from typing import Any

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


def run_local(pipe: Any, pairs: list[tuple[Path, Path]], folder: Path) -> dict:
    """The jobs one after another on a pipeline loaded in this process (what `generate --jobs` does)."""
    folder.mkdir(parents=True, exist_ok=True)
    per_job = []
    start = time.perf_counter()
    for i, (video, audio) in enumerate(pairs):
        t0 = time.perf_counter()
        pipe(video, audio, folder / f"local{i}.mp4")
        per_job.append(time.perf_counter() - t0)
    return {"wall_s": time.perf_counter() - start, "in_worker_s": per_job}


def run_ray(pool: Any, pairs: list[tuple[Path, Path]], folder: Path) -> dict:
    """The same jobs as a Ray batch on a started pool, through `run_batch` with a results manifest, as
    `stylelipsync batch --ray` runs them."""
    from stylelipsync.batch.jobs import read_jobs
    from stylelipsync.batch.manifest import Manifest, manifest_path
    from stylelipsync.batch.runner import RayBackend, run_batch
    from stylelipsync.pipelines import GenerateOptions

    jobs_csv = write_csv(folder, pairs)
    jobs = read_jobs(jobs_csv, GenerateOptions())
    start = time.perf_counter()
    with Manifest(manifest_path(jobs_csv)) as manifest:
        summary = run_batch(jobs, lambda _todo: nullcontext(RayBackend(pool)), None, manifest)
    wall = time.perf_counter() - start
    if summary.failed:
        sys.exit(f"{summary.failed} Ray job(s) failed: see {manifest_path(jobs_csv)}")
    results = manifest_path(jobs_csv).read_text().splitlines()[1:]
    return {"wall_s": wall, "in_worker_s": [float(line.split(",")[2]) for line in results]}


def start_pool(
    ray: Any, workers: int, checkpoint: str | None, threads: int, niceness: int | None
) -> tuple[Any, float, list[int]]:
    """A started `RayPool`; `niceness` 15 starts its workers as Ray does by default (for the comparison),
    None as the pool does. Returns (pool, start-up seconds, the workers' niceness)."""
    from stylelipsync.pipelines.engines import EngineSpec
    from stylelipsync.remote import ray_pool

    env = dict(ray_pool.WORKER_ENV)
    if niceness is not None:
        ray_pool.WORKER_ENV["RAY_worker_niceness"] = str(niceness)
    try:
        start = time.perf_counter()
        spec = EngineSpec.resolve(checkpoint=checkpoint)
        pool = ray_pool.RayPool(workers, spec, device="cpu", cpus_per_worker=threads).start()
        startup = time.perf_counter() - start
    finally:
        ray_pool.WORKER_ENV.clear()
        ray_pool.WORKER_ENV.update(env)
    nice = ray.get([actor.niceness.remote() for actor in pool.actors])
    return pool, startup, nice


def mean_per_job(runs: list[dict], jobs: int) -> float:
    return statistics.mean(r["wall_s"] for r in runs) / jobs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", help="model directory (stylelipsync engine; default: bank engine)")
    parser.add_argument("--jobs", type=int, default=6, help="jobs per batch")
    parser.add_argument("--seconds", type=float, default=10.0, help="video (and speech) per job, at most 11")
    parser.add_argument("--rounds", type=int, default=2, help="alternating local / Ray 1-worker batches")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (= CPUs) per worker and locally"
    )
    parser.add_argument(
        "--compare-niceness",
        action="store_true",
        help="also run each round on a 1-worker pool at Ray's default worker niceness 15 (the old overhead)",
    )
    parser.add_argument("--no-two-workers", action="store_true", help="skip the 2-worker batch")
    args = parser.parse_args()
    checkpoint = os.path.abspath(args.checkpoint) if args.checkpoint else None

    import ray
    import torch

    from stylelipsync.pipelines import LipSyncPipeline

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    local: list[dict] = []
    ray1: list[dict] = []
    ray15: list[dict] = []
    ray2: dict | None = None
    try:
        pairs = make_jobs(work, args.jobs, args.seconds)
        pipe = LipSyncPipeline.from_pretrained(checkpoint, device="cpu")
        pipe(
            *pairs[0], work / "warmup.mp4"
        )  # load what the first job would, as a worker does before its jobs
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        pool1, startup1, nice1 = start_pool(ray, 1, checkpoint, args.threads, None)
        pool15 = start_pool(ray, 1, checkpoint, args.threads, 15) if args.compare_niceness else None
        with pool1:
            for r in range(args.rounds):
                local.append(run_local(pipe, pairs, work / f"local{r}"))
                ray1.append(run_ray(pool1, pairs, work / f"ray1_{r}"))
                if pool15 is not None:
                    ray15.append(run_ray(pool15[0], pairs, work / f"ray15_{r}"))
                print(
                    f"round {r}: local {local[-1]['wall_s']:.1f} s, Ray 1 worker {ray1[-1]['wall_s']:.1f} s"
                    + (f", Ray 1 worker at niceness 15 {ray15[-1]['wall_s']:.1f} s" if ray15 else "")
                    + f" (load average {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
        if pool15 is not None:
            pool15[0].close()
        if not args.no_two_workers:
            pool2, _, _ = start_pool(ray, 2, checkpoint, args.threads, None)
            with pool2:
                ray2 = run_ray(pool2, pairs, work / "ray2")
                local.append(run_local(pipe, pairs, work / "local_last"))
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    jobs = args.jobs
    local_job, ray1_job = mean_per_job(local, jobs), mean_per_job(ray1, jobs)
    overhead = 100 * (ray1_job - local_job) / local_job
    report: dict[str, Any] = {
        "jobs": jobs,
        "seconds_per_job": args.seconds,
        "rounds": args.rounds,
        "engine": "stylelipsync" if checkpoint else "bank",
        "load_average": os.getloadavg()[0],
        "local_per_job_s": round(local_job, 2),
        "ray1_per_job_s": round(ray1_job, 2),
        "ray1_overhead_pct": round(overhead, 2),
        "ray1_worker_niceness": nice1,
        "ray1_startup_s": round(startup1, 1),
        "ray1_in_worker_per_job_s": round(statistics.mean(x for r in ray1 for x in r["in_worker_s"]), 2),
        "local_in_call_per_job_s": round(statistics.mean(x for r in local for x in r["in_worker_s"]), 2),
    }
    print(f"{jobs} jobs of {args.seconds:g} s of video per batch, {args.rounds} alternating rounds")
    print(f"local generate: {local_job:.2f} s/job ({3600 / local_job:.1f} jobs/hour)")
    print(
        f"Ray, 1 worker (niceness {nice1}): {ray1_job:.2f} s/job, overhead vs local {overhead:+.2f} % "
        f"(target <= 5 %; start-up {startup1:.1f} s apart)"
    )
    if ray15:
        job15 = mean_per_job(ray15, jobs)
        report["ray1_niceness15_overhead_pct"] = round(100 * (job15 - local_job) / local_job, 2)
        print(
            f"Ray, 1 worker at niceness 15 (Ray's default): {job15:.2f} s/job, overhead "
            f"{report['ray1_niceness15_overhead_pct']:+.2f} %"
        )
    if ray2 is not None:
        speedup = (local_job * jobs) / ray2["wall_s"]
        report["ray2_speedup_vs_local"] = round(speedup, 2)
        report["ray2_jobs_per_hour"] = round(3600 * jobs / ray2["wall_s"], 1)
        print(
            f"Ray, 2 workers: {report['ray2_jobs_per_hour']} jobs/hour = {speedup:.2f}x local "
            "(target >= 1.3x)"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
