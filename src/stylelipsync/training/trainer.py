"""One training loop for every model family (SyncNet expert, StyleGAN2 decoder, StyleLipSync).

A ``TrainingTask`` owns the networks, optimisers, data and losses; the ``Trainer`` owns everything that is the
same for all of them: Hugging Face Accelerate process set-up (single process, ``accelerate launch`` or
``torchrun``), mixed precision, gradient accumulation and all-reduce, learning-rate schedules, deterministic
data order, TensorBoard logging, validation, atomic checkpoints with exact resume, and the final export.

Gradients are all-reduced by hand after the backward passes instead of wrapping the networks in DDP, as
StyleGAN2-ADA does: the GAN alternates generator and discriminator phases and its lazy R1 penalty needs a
double backward, which DDP does not support, and one code path keeps the three trainers identical.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from stylelipsync.training.config import TrainerConfig, save_yaml
from stylelipsync.training.sampler import ShardedInfiniteSampler

log = logging.getLogger("stylelipsync.training")

Batch = dict[str, Any]
LossFn = Callable[[Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]

CHECKPOINT_PREFIX = "checkpoint-"


def _destroy_process_group() -> None:
    """At interpreter exit: tear the process group down while Python still runs. Left to the C++ destructors,
    a gloo group's threads were occasionally destroyed while joinable and the process aborted after a
    successful run ("terminate called without an active exception", exit code −6, seen once in CI)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class TrainingTask(ABC):
    """A model family plugged into the shared ``Trainer``.

    ``config`` is the task's top-level dataclass; it must have a ``trainer: TrainerConfig`` field.
    """

    config: Any
    trainer: Trainer

    @abstractmethod
    def build(self, trainer: Trainer) -> None:
        """Create networks and optimisers on ``trainer.device`` (called with the same seed on every rank)."""

    @abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """Every network whose state is checkpointed (trainable, frozen-but-updated such as EMA copies)."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers by name; each gets its own learning-rate schedule."""

    @abstractmethod
    def train_dataset(self) -> Dataset[Any]:
        """Map-style dataset indexed by ``(index, sample_seed)`` keys."""

    @abstractmethod
    def train_step(self, batches: list[Batch], step: int) -> dict[str, float]:
        """One update from ``grad_accum`` micro-batches (use ``trainer.optimize``); returns scalars."""

    def validate(self, step: int) -> dict[str, float]:
        """Held-out metrics, run on the main process only with a fixed seed."""
        return {}

    def images(self, step: int) -> dict[str, torch.Tensor]:
        """Image batches [N, 3, H, W] in [−1, 1] to log as grids."""
        return {}

    @abstractmethod
    def export(self, out_dir: Path) -> None:
        """Write the deliverable weights (``save_pretrained`` format, never optimiser state)."""


def capture_rng() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in a ``torch.load(weights_only=True)``-compatible form."""
    np_state = cast(tuple[Any, ...], np.random.get_state())
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng``."""
    random.setstate(_as_tuple(state["python"]))
    npst = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            npst["key"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_as_tuple(v) for v in value)
    return value


@contextlib.contextmanager
def preserved_rng(seed: int | None = None) -> Iterator[None]:
    """Run a block (validation, image logging) without disturbing the training RNG streams."""
    saved = capture_rng()
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)
    try:
        yield
    finally:
        restore_rng(saved)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def lr_lambda(config: TrainerConfig) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up, then constant or cosine decay to zero."""

    def factor(step: int) -> float:
        if config.lr_warmup_steps > 0 and step < config.lr_warmup_steps:
            return (step + 1) / config.lr_warmup_steps
        if config.lr_schedule == "cosine":
            span = max(1, config.steps - config.lr_warmup_steps)
            progress = min(1.0, (step - config.lr_warmup_steps) / span)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Finished checkpoints of a run, oldest first (temporary directories are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The most recent finished checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint_modules(checkpoint: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Module state dicts of a checkpoint (for export without building a trainer)."""
    return torch.load(Path(checkpoint) / "modules.pt", map_location="cpu", weights_only=True)


def image_grid(images: torch.Tensor, ncol: int | None = None) -> torch.Tensor:
    """Tile [N, C, H, W] images in [−1, 1] into one [3, rows·H, ncol·W] image in [0, 1]."""
    x = images.detach().float().cpu().clamp(-1, 1).add(1).div(2)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, c, h, w = x.shape
    ncol = ncol or min(n, 8)
    rows = math.ceil(n / ncol)
    grid = torch.ones(c, rows * h, ncol * w)
    for i in range(n):
        r, k = divmod(i, ncol)
        grid[:, r * h : (r + 1) * h, k * w : (k + 1) * w] = x[i]
    return grid


class Trainer:
    """Runs a ``TrainingTask``: ``Trainer(task, run_dir, resume=...).fit()``.

    The run directory holds ``config.yaml``, ``checkpoints/checkpoint-<step>/`` (the last ``keep_last``),
    ``tb/`` (TensorBoard), ``images/`` and, when training finishes, ``export/`` (the deliverable weights).
    ``stop_after`` ends the run early at that step with a checkpoint, as a pre-emption would.
    """

    def __init__(
        self,
        task: TrainingTask,
        run_dir: str | Path,
        resume: bool = False,
        stop_after: int | None = None,
        cpu: bool = False,
    ) -> None:
        from accelerate import Accelerator

        self.task = task
        self.config: TrainerConfig = task.config.trainer
        self.run_dir = Path(run_dir)
        self.stop_after = stop_after
        # Without cpu=True, Accelerate ignores a torchrun launch on a machine without CUDA (no process group).
        cpu = cpu or not torch.cuda.is_available()
        self.accelerator = Accelerator(mixed_precision=self.config.mixed_precision, cpu=cpu)
        if dist.is_available() and dist.is_initialized():
            atexit.unregister(_destroy_process_group)  # once, however many trainers a process runs
            atexit.register(_destroy_process_group)
        self.device = self.accelerator.device
        self.rank = self.accelerator.process_index
        self.world_size = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self.step = 0
        self.consumed = 0
        self._stop_requested = False
        self._writer: Any = None
        self._resume_from = latest_checkpoint(self.run_dir) if resume else None
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator.wait_for_everyone()

        if self.config.torch_threads > 0:
            torch.set_num_threads(self.config.torch_threads)
        seed_everything(self.config.seed)
        task.trainer = self
        task.build(self)
        self.modules = task.modules()
        self.optimizers = task.optimizers()
        self.schedulers = {
            name: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(self.config))
            for name, opt in self.optimizers.items()
        }
        self._broadcast_module_state()
        seed_everything(self.config.seed + 7919 * self.rank)
        if self._resume_from is not None:
            self.load_checkpoint(self._resume_from)
        elif resume and self.is_main:
            log.warning("--resume: no checkpoint in %s, starting from step 0", self.run_dir)
        if self.is_main:
            save_yaml(task.config, self.run_dir / "config.yaml")

    # ------------------------------------------------------------------ distributed helpers
    @property
    def distributed(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Mixed-precision context (bf16 autocast when configured, else a no-op)."""
        return self.accelerator.autocast()

    def _broadcast_module_state(self) -> None:
        if not self.distributed:
            return
        for module in self.modules.values():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics, EMA w_avg), as DDP's broadcast_buffers."""
        if not self.distributed:
            return
        for module in self.modules.values():
            for b in module.buffers():
                dist.broadcast(b.data, src=0)

    def all_reduce_grads(self, params: list[nn.Parameter]) -> None:
        """Average gradients over processes; parameters without a gradient on every rank keep none."""
        if not self.distributed:
            return
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=self.device)
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        active = [p for p, h in zip(params, has.tolist(), strict=True) if h > 0]
        if not active:
            return
        flat = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in active]
        )
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in active:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone()
            offset += n

    def reduce_mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average a dict of scalars over processes (same keys on every rank)."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.tolist(), strict=True)}

    # ------------------------------------------------------------------ optimisation helper
    def optimize(
        self,
        optimizer: str,
        loss_fn: LossFn,
        batches: list[Batch],
        clip: float | None = None,
    ) -> dict[str, float]:
        """zero_grad → backward of ``loss_fn`` on each micro-batch (averaged) → all-reduce → clip → step.

        ``loss_fn(batch)`` returns ``(loss, parts)``; the parts (detached scalars) are averaged and returned.
        """
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        parts_sum: dict[str, float] = {}
        for batch in batches:
            with self.autocast():
                loss, parts = loss_fn(batch)
            self.accelerator.backward(loss.float() / len(batches))
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + float(v) / len(batches)
        params = [p for group in opt.param_groups for p in group["params"]]
        self.all_reduce_grads(params)
        clip = self.config.grad_clip if clip is None else clip
        if clip and clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
            parts_sum[f"{optimizer}_grad_norm"] = float(norm)
        opt.step()
        return parts_sum

    def to_device(self, batch: Batch) -> Batch:
        """Move the tensors of a collated batch to the training device."""
        return {
            k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
        }

    # ------------------------------------------------------------------ data
    def _loader(self) -> DataLoader[Any]:
        dataset = self.task.train_dataset()
        sampler = ShardedInfiniteSampler(
            len(dataset),  # type: ignore[arg-type]
            rank=self.rank,
            world_size=self.world_size,
            seed=self.config.seed,
            start=self.consumed,
        )
        workers = self.config.num_workers
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=False,
            prefetch_factor=2 if workers > 0 else None,
            generator=torch.Generator().manual_seed(self.config.seed + self.rank),
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_ignore_stop_signals if workers > 0 else None,
        )

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/checkpoint-<step>`` atomically (temp dir + rename) and prune old ones."""
        root = self.run_dir / "checkpoints"
        final = root / f"{CHECKPOINT_PREFIX}{self.step:08d}"
        tmp = root / f".tmp-{CHECKPOINT_PREFIX}{self.step:08d}"
        if final.exists():
            return final
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        torch.save(capture_rng(), tmp / f"rng-rank{self.rank}.pt")
        self.accelerator.wait_for_everyone()
        if self.is_main:
            torch.save({name: m.state_dict() for name, m in self.modules.items()}, tmp / "modules.pt")
            torch.save(
                {
                    "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                    "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                },
                tmp / "optimizers.pt",
            )
            state = {"step": self.step, "consumed": self.consumed, "world_size": self.world_size}
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
            save_yaml(self.task.config, tmp / "config.yaml")
            os.replace(tmp, final)
            for old in list_checkpoints(self.run_dir)[: -self.config.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return final

    def load_checkpoint(self, path: Path) -> None:
        """Restore networks, optimisers, schedules, data position, step and this rank's RNG streams."""
        modules = torch.load(path / "modules.pt", map_location=self.device, weights_only=True)
        for name, module in self.modules.items():
            module.load_state_dict(modules[name])
        opt_state = torch.load(path / "optimizers.pt", map_location=self.device, weights_only=True)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(opt_state["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(opt_state["schedulers"][name])
        state = json.loads((path / "trainer_state.json").read_text())
        self.step = int(state["step"])
        self.consumed = int(state["consumed"])
        if int(state["world_size"]) != self.world_size:
            log.warning(
                "resuming a %d-process run on %d processes: the data order will differ",
                state["world_size"],
                self.world_size,
            )
        rng_file = path / f"rng-rank{self.rank}.pt"
        if rng_file.exists():
            restore_rng(torch.load(rng_file, weights_only=True))
        if self.is_main:
            log.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ logging
    @property
    def writer(self) -> Any:
        if self._writer is None and self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tb"))
        return self._writer

    def log_scalars(self, values: dict[str, float], prefix: str) -> None:
        """Write scalars to TensorBoard (main process)."""
        if not self.is_main:
            return
        for k, v in values.items():
            self.writer.add_scalar(f"{prefix}/{k}", v, self.step)
        self.writer.flush()

    def log_images(self, images: dict[str, torch.Tensor]) -> None:
        """Write image grids to TensorBoard and ``images/<name>-<step>.png`` (main process)."""
        if not self.is_main or not images:
            return
        import cv2

        out = self.run_dir / "images"
        out.mkdir(exist_ok=True)
        for name, batch in images.items():
            grid = image_grid(batch)
            self.writer.add_image(name, grid, self.step)
            rgb = (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
            cv2.imwrite(str(out / f"{name}-{self.step:08d}.png"), rgb[:, :, ::-1])
        self.writer.flush()

    # ------------------------------------------------------------------ loop
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_requested = True

    def _should_stop(self) -> bool:
        flag = self._stop_requested
        if self.distributed:
            t = torch.tensor([1.0 if flag else 0.0], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item() > 0)
        return flag

    def _periodic(self, every: int) -> bool:
        return every > 0 and self.step % every == 0

    def fit(self) -> Path | None:
        """Train until ``config.steps`` (or ``stop_after``); returns the export directory when finished."""
        cfg = self.config
        previous = {}
        if threading_is_main():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            return self._loop(cfg)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def _loop(self, cfg: TrainerConfig) -> Path | None:
        limit = cfg.steps if self.stop_after is None else min(cfg.steps, self.stop_after)
        if self.step >= limit:
            return self._finish(limit)
        loader = iter(self._loader())
        bar = tqdm(
            total=cfg.steps, initial=self.step, disable=not self.is_main, dynamic_ncols=True, desc="train"
        )
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        count = 0
        t0 = time.perf_counter()
        while self.step < limit:
            batches = [self.to_device(next(loader)) for _ in range(cfg.grad_accum)]
            logs = self.task.train_step(batches, self.step)
            self.step += 1
            self.consumed += cfg.grad_accum * cfg.batch_size
            for sched in self.schedulers.values():
                sched.step()
            self._sync_buffers()
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1
            count += 1
            bar.update(1)
            if self._periodic(cfg.log_every) or self.step == limit:
                means = self.reduce_mean({k: v / counts[k] for k, v in sums.items()})
                lrs = [float(s.get_last_lr()[0]) for s in self.schedulers.values()]
                means["lr"] = lrs[0] if lrs else 0.0
                means["steps_per_s"] = count / max(time.perf_counter() - t0, 1e-9)
                self.log_scalars(means, "train")
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:4]})
                sums, counts, count, t0 = {}, {}, 0, time.perf_counter()
            if self._periodic(cfg.val_every):
                self.run_validation()
            if self._periodic(cfg.image_every):
                self.run_images()
            stop = self._should_stop()
            if self._periodic(cfg.checkpoint_every) or self.step == limit or stop:
                self.save_checkpoint()
            if stop:
                if self.is_main:
                    log.warning("stop requested: checkpoint written at step %d", self.step)
                break
        bar.close()
        return self._finish(limit)

    def _finish(self, limit: int) -> Path | None:
        if self.step < self.config.steps:
            return None
        out = self.run_dir / "export"
        if self.is_main:
            self.task.export(out)
        self.accelerator.wait_for_everyone()
        return out if self.is_main else None

    def run_validation(self) -> dict[str, float]:
        """Task validation on the main process, RNG-neutral; logged under ``val/``."""
        metrics: dict[str, float] = {}
        if self.is_main:
            with preserved_rng(self.config.seed + 1), torch.no_grad():
                metrics = self.task.validate(self.step)
            self.log_scalars(metrics, "val")
            if metrics:
                log.info("step %d validation: %s", self.step, json.dumps(metrics))
                with (self.run_dir / "validation.jsonl").open("a") as fh:
                    fh.write(json.dumps({"step": self.step, **metrics}) + "\n")
        self.accelerator.wait_for_everyone()
        return metrics

    def run_images(self) -> None:
        """Task image grids on the main process, RNG-neutral."""
        if self.is_main:
            with preserved_rng(self.config.seed + 2), torch.no_grad():
                self.log_images(self.task.images(self.step))
        self.accelerator.wait_for_everyone()


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGTERM/SIGINT to the main process, which checkpoints before exiting."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def threading_is_main() -> bool:
    """Signal handlers can only be installed from the main thread."""
    import threading

    return threading.current_thread() is threading.main_thread()
