"""Remote execution: pipeline calls run on Ray actors, for `batch --ray` and `serve --ray`.

* `ray_pool`: connecting to a cluster, `DubbingWorker` (an actor holding one loaded pipeline, built from an
  `EngineSpec`), `RayPool` (workers + their progress hub, restarts, readiness);
* `pipeline`: `RemotePipeline`, a `DubbingPipeline` whose calls run on one Ray worker (the service's workers).

The batch scheduling on a pool (backpressure, retries, the results manifest) is `batch.runner.RayBackend`.
Ray is imported only when a pool is started or a cluster connected.
"""
