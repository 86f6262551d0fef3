"""A pool of Ray actors, each holding one loaded pipeline: the remote half of `batch --ray` and `serve --ray`.

`RayPool` starts `workers` `DubbingWorker` actors on the connected cluster and a small `ProgressHub` actor
that they post their progress to. Each worker builds its pipeline from the pool's `EngineSpec` (paths made
absolute: they must be valid on every node), runs the calls sent to it one at a time, and reports a model
that cannot be loaded through `ready()` instead of raising (Ray would restart it forever). Ray restarts a
worker whose process dies (`max_restarts=-1`); `stop`/`revive` kill and replace workers on purpose.

What runs on the pool is up to the caller: `batch.runner.RayBackend` schedules a batch (`DubbingWorker.run`,
which never raises), `remote.pipeline.RemotePipeline` one call at a time (`DubbingWorker.generate`, which
raises the call's error).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from stylelipsync.errors import CheckpointError, StyleLipSyncError
from stylelipsync.jobrun import DubbingPipeline, JobRun, ProgressThrottle, run_job
from stylelipsync.pipelines.engines.spec import EngineSpec

if TYPE_CHECKING:
    from stylelipsync.pipelines.options import GenerateOptions, GenerateResult

WORKER_ENV = {"RAY_worker_niceness": "0"}
"""Environment of the worker processes. Ray makes its workers 15 nice levels nicer than its own processes
(`worker_niceness`) so that its daemons win the CPU; a dubbing worker is the job itself, and there it lost
the CPU to anything else running (Ray's daemons, the driver, other users): 6.7 % slower per job than
`generate` on the same 2 cores. With 0 it keeps the priority Ray was started with and competes like the local
run does. The core worker reads this variable as it starts, before any user code."""


def import_ray() -> Any:
    """The `ray` module, or a user error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise StyleLipSyncError(
            "--ray needs Ray, which is not installed here: pip install 'stylelipsync[ray]' "
            "(on every node of the cluster too)"
        ) from exc
    return ray


def connect_ray(address: str, debug: bool = False, start_local: bool = True) -> Any:
    """Connect this process to a Ray cluster; returns the `ray.init` context.

    `address`: "auto" joins the cluster this machine belongs to (`RAY_ADDRESS`, or one started here with
    `ray start`), else (if `start_local`) starts a local Ray instance; otherwise a head node's `HOST:PORT` or
    a `ray://HOST:10001` client address.
    """
    import logging

    ray = import_ray()
    try:
        return ray.init(
            address=None if address == "auto" and start_local else address,
            logging_level=logging.INFO if debug else logging.WARNING,
            log_to_driver=debug,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise StyleLipSyncError(
            f"cannot connect to the Ray cluster at {address} ({exc}); start one with `ray start --head` and "
            "pass its address, or use --ray auto for a local one"
        ) from exc


@contextmanager
def ray_connection(address: str, debug: bool = False) -> Iterator[Any]:
    """`connect_ray` for the duration of the block, unless this process is connected already (then the
    block gets None). Leaving the block disconnects, which also stops a local instance started here."""
    ray = import_ray()
    if ray.is_initialized():
        yield None
        return
    context = connect_ray(address, debug)
    try:
        yield context
    finally:
        ray.shutdown()


def default_workers(cpus_per_worker: float, gpus_per_worker: float) -> int:
    """As many workers as the connected cluster has room for (CPUs, and GPUs when they are asked for)."""
    resources = import_ray().cluster_resources()
    count = int(resources.get("CPU", 0) // max(cpus_per_worker, 1e-9))
    if gpus_per_worker > 0:
        count = min(count, int(resources.get("GPU", 0) // gpus_per_worker))
    return max(1, count)


class ProgressHub:
    """A small Ray actor: the workers post the progress of their current job here; the driver reads it."""

    def __init__(self) -> None:
        self.state: dict[int, tuple[int, Any, int, int]] = {}

    def update(self, slot: int, pid: int, job: Any, done: int, total: int) -> None:
        self.state[slot] = (pid, job, done, total)

    def snapshot(self) -> dict[int, tuple[int, Any, int, int]]:
        return dict(self.state)


class DubbingWorker:
    """A Ray actor holding one loaded pipeline; runs the calls sent to it one at a time, in order.

    The pipeline is `LipSyncPipeline.from_spec(spec, device)`: the spec's engine is the default; a call's own
    `options.engine` picks the engine of that call, the other one being loaded on first use.

    A model that cannot be loaded is not raised here (Ray would keep restarting the actor): `ready()`
    returns the message, and every job sent to it fails with it. The progress hub is found by name, so that
    the constructor's arguments are plain values that a restart can always reuse.
    """

    def __init__(
        self,
        slot: int,
        hub: str,
        spec: EngineSpec,
        device: str,
        threads: int,
    ) -> None:
        if "torch" not in sys.modules:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        torch.set_num_threads(max(1, threads))
        import ray

        from stylelipsync.pipelines import LipSyncPipeline

        self.slot, self.hub, self.pid = slot, ray.get_actor(hub), os.getpid()
        self.pipe: DubbingPipeline | None = None
        self.error: str | None = None
        try:
            self.pipe = LipSyncPipeline.from_spec(spec, device)
        except StyleLipSyncError as exc:
            self.error = str(exc)
        self.hub.update.remote(slot, self.pid, None, 0, 0)

    def ready(self) -> tuple[int, str | None]:
        """(process id, the model's load error or None)."""
        return self.pid, self.error

    def niceness(self) -> int:
        """The worker process's niceness: that of the node's Ray processes (see `WORKER_ENV`)."""
        return os.nice(0)

    def run(self, video: str, audio: str, output: str, options: GenerateOptions, tag: Any) -> JobRun:
        """One call of a batch (`run_job`: never raises), posting its progress to the hub as `tag`."""
        if self.pipe is None:
            return JobRun(error=str(self.error))
        return run_job(self.pipe, video, audio, output, options, self._progress(tag))

    def generate(
        self, video: str, audio: str, output: str, options: GenerateOptions, tag: Any
    ) -> GenerateResult:
        """One pipeline call for `RemotePipeline`: returns the `GenerateResult`, raises its errors."""
        if self.pipe is None:
            raise CheckpointError(str(self.error))
        return self.pipe(video, audio, output, options=options, progress=self._progress(tag))

    def _progress(self, tag: Any) -> Callable[[int, int], None]:
        self.hub.update.remote(self.slot, self.pid, tag, 0, 0)
        throttle = ProgressThrottle()

        def progress(done: int, total: int) -> None:
            if throttle.due(done, total):
                self.hub.update.remote(self.slot, self.pid, tag, done, total)

        return progress


class RayPool:
    """`workers` `DubbingWorker` actors on the connected Ray cluster, and their progress hub.

    Each worker builds its pipeline from `spec` (default: the bank engine); each call's `options.engine`
    still chooses its own. Paths (checkpoint, inputs, outputs) must be valid on every node: a shared file
    system mounted at the same place everywhere.
    """

    def __init__(
        self,
        workers: int,
        spec: EngineSpec | None = None,
        device: str = "auto",
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float = 0.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.spec = (spec or EngineSpec()).absolute()
        self.device = device
        self.cpus_per_worker, self.gpus_per_worker = cpus_per_worker, gpus_per_worker
        self.actors: list[Any] = []
        self.pids: list[int] = []
        self.hub: Any = None
        self.hub_name = ""

    def start(self, timeout: float = 600.0) -> RayPool:
        """Start the actors and wait until every one has loaded the model."""
        ray = import_ray()
        self.hub_name = f"stylelipsync-progress-{os.getpid()}-{time.monotonic_ns()}"
        self.hub = ray.remote(num_cpus=0)(ProgressHub).options(name=self.hub_name).remote()
        self.actors = [self._actor(slot) for slot in range(self.workers)]
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def wait_ready(self, timeout: float = 600.0) -> list[int]:
        """Wait until every worker has loaded the model (asking again while one restarts); their pids.

        Raises `CheckpointError` if the model cannot be loaded, `StyleLipSyncError` after `timeout`.
        """
        ray = import_ray()
        deadline = time.monotonic() + timeout
        answers: dict[int, tuple[int, str | None]] = {}
        while len(answers) < len(self.actors):
            if time.monotonic() > deadline:
                raise StyleLipSyncError(
                    f"the {self.workers} Ray worker(s) were not all ready after {timeout:g} s: does the "
                    f"cluster have {self.cpus_per_worker:g} CPU(s)"
                    + (f" and {self.gpus_per_worker:g} GPU(s)" if self.gpus_per_worker else "")
                    + " free for each? Lower --workers, or see the Ray dashboard"
                )
            for slot, actor in enumerate(self.actors):
                if slot in answers:
                    continue
                try:
                    answers[slot] = ray.get(
                        actor.ready.remote(), timeout=max(0.1, deadline - time.monotonic())
                    )
                except ray.exceptions.GetTimeoutError:
                    continue
                except ray.exceptions.ActorUnavailableError:
                    time.sleep(0.5)
                except ray.exceptions.ActorDiedError as exc:
                    raise StyleLipSyncError(
                        f"a Ray worker could not start ({str(exc).splitlines()[0]}); is stylelipsync[ray] "
                        "installed, in the same version, on every node? See the worker logs (Ray dashboard)"
                    ) from exc
        errors = [error for _, error in answers.values() if error]
        if errors:
            raise CheckpointError(errors[0])
        self.pids = [answers[slot][0] for slot in range(len(self.actors))]
        return list(self.pids)

    def _actor(self, slot: int) -> Any:
        """A new worker for `slot` (not waited for)."""
        ray = import_ray()
        actor = ray.remote(DubbingWorker).options(
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
            max_restarts=-1,
            max_task_retries=0,
            runtime_env={"env_vars": dict(WORKER_ENV)},
        )
        threads = max(1, int(self.cpus_per_worker))
        return actor.remote(slot, self.hub_name, self.spec, self.device, threads)

    def snapshot(self) -> dict[int, tuple[int, Any, int, int]]:
        """slot → (process id, job tag, frames done, total) of each worker's current or last job."""
        ray = import_ray()
        state: dict[int, tuple[int, Any, int, int]] = ray.get(self.hub.snapshot.remote(), timeout=30)
        return state

    def stop(self, slots: Sequence[int]) -> None:
        """Kill the given workers at once (their running jobs end); `revive` replaces them when needed."""
        ray = import_ray()
        for slot in slots:
            ray.kill(self.actors[slot], no_restart=True)
            self.actors[slot] = None

    def revive(self) -> None:
        """Start new workers in the slots `stop` emptied (not waited for: the backend pings them)."""
        for slot, handle in enumerate(self.actors):
            if handle is None:
                self.actors[slot] = self._actor(slot)

    def close(self) -> None:
        """Stop the actors and the hub."""
        ray = import_ray()
        for handle in [*self.actors, self.hub]:
            if handle is not None:
                with suppress(Exception):
                    ray.kill(handle, no_restart=True)
        self.actors, self.hub = [], None

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def worker_lost_errors() -> tuple[type[BaseException], ...]:
    """Ray's exceptions for a task whose worker process died (killed, out of memory, node lost)."""
    ex = import_ray().exceptions
    return (ex.RayActorError, ex.WorkerCrashedError, ex.OutOfMemoryError, ex.NodeDiedError)


def death_reason(exc: BaseException) -> str:
    """Why a worker died, as the failed job's message says it."""
    if type(exc).__name__ == "OutOfMemoryError" or "memory" in str(exc).lower():
        return "its Ray worker ran out of memory and was killed"
    return "its Ray worker died (process killed or crashed)"
