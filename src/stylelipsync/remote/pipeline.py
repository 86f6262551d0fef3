"""`RemotePipeline`: a `DubbingPipeline` whose calls run on one Ray worker (`stylelipsync serve --ray`)."""

from __future__ import annotations

import os
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from stylelipsync.errors import StyleLipSyncError
from stylelipsync.jobrun import call_outputs, remove_partials
from stylelipsync.pipelines.engines.spec import EngineSpec
from stylelipsync.pipelines.options import GenerateOptions
from stylelipsync.remote.ray_pool import RayPool, connect_ray, death_reason, import_ray, worker_lost_errors

if TYPE_CHECKING:
    from stylelipsync.pipelines.options import GenerateResult
    from stylelipsync.pipelines.plan import Progress, StageProgress


class RemotePipeline:
    """A `LipSyncPipeline` stand-in whose calls run on one Ray worker.

    It connects this process to a running cluster ("auto": the one this machine belongs to; no local Ray
    instance is started, as it would end with this process) and starts one `DubbingWorker` there, which
    builds its pipeline from `spec`. A call sends the job, relays its progress to `progress` (a callable
    that may raise to stop the job: the worker is then killed, and replaced on the next call), and returns
    the worker's `GenerateResult` or raises the worker's error. Paths must be valid on every node.
    """

    def __init__(
        self,
        address: str,
        spec: EngineSpec | None = None,
        device: str = "auto",
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float = 0.0,
        poll_seconds: float = 0.25,
    ) -> None:
        self.ray = import_ray()
        if not self.ray.is_initialized():
            connect_ray(address, start_local=False)
        self.poll = poll_seconds
        self.pool = RayPool(1, spec, device, cpus_per_worker, gpus_per_worker).start()

    def __call__(
        self,
        video: str | Path,
        audio: str | Path,
        output: str | Path,
        options: GenerateOptions | None = None,
        *,
        progress: Progress | StageProgress = False,
        **overrides: Any,
    ) -> GenerateResult:
        opts = (options or GenerateOptions()).updated(**overrides)
        self.pool.revive()
        self.pool.wait_ready()
        tag = f"call-{time.monotonic_ns()}"
        self._last: tuple[int, int] | None = None
        paths = [os.path.abspath(p) for p in (video, audio, output)]
        ref = self.pool.actors[0].generate.remote(*paths, opts, tag)
        try:
            while not self.ray.wait([ref], timeout=self.poll)[0]:
                self._relay(tag, progress)
            self._relay(tag, progress)
        except BaseException:
            self.pool.stop([0])
            with suppress(Exception):
                self.ray.wait([ref], timeout=30)
            remove_partials(call_outputs(paths[2], opts))
            raise
        try:
            return cast("GenerateResult", self.ray.get(ref))
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise
        except worker_lost_errors() as exc:
            remove_partials(call_outputs(paths[2], opts))
            raise StyleLipSyncError(
                f"{death_reason(exc)} while dubbing; submit the job again, perhaps with a shorter or "
                "smaller video"
            ) from exc

    def _relay(self, tag: str, progress: Progress | StageProgress) -> None:
        """Hand the job's progress, when it has changed, to the caller's callable."""
        if not callable(progress):
            return
        try:
            state = self.pool.snapshot().get(0)
        except self.ray.exceptions.RayError:
            return
        if state is not None and state[1] == tag and state[3] > 0 and state[2:] != self._last:
            self._last = state[2:]
            progress(state[2], state[3])

    def close(self) -> None:
        """Stop the worker."""
        self.pool.close()
