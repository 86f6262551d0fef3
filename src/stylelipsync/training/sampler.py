"""Deterministic, resumable, rank-sharded infinite sampler.

The stream of samples is a pure function of (seed, rank, world size, position): epoch ``e`` is a permutation
drawn from a generator seeded with ``(seed, e)``, split round-robin over ranks, and every sample carries its
own seed for the dataset's random choices (crop jitter, reference frame, wrong-audio offset). Resuming at
position ``n`` therefore replays exactly the samples an uninterrupted run would have drawn, whatever the
number of DataLoader workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

SampleKey = tuple[int, int]

_MASK63 = (1 << 63) - 1


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one sample, mixing the run seed, the epoch and the global position (splitmix64)."""
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + position * 0x94D049BB133111EB) & _MASK63
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK63
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK63
    return z ^ (z >> 31)


class ShardedInfiniteSampler(Sampler[SampleKey]):
    """Yields ``(dataset_index, sample_seed)`` forever, starting at per-rank position ``start``."""

    def __init__(
        self,
        num_items: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        start: int = 0,
        shuffle: bool = True,
    ) -> None:
        if num_items < 1:
            raise ValueError("the training set is empty: no sample can be drawn")
        self.num_items = num_items
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start = start
        self.shuffle = shuffle
        self.per_rank = math.ceil(num_items / world_size)

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, -1) & 0xFFFFFFFF)
            order = torch.randperm(self.num_items, generator=g)
        else:
            order = torch.arange(self.num_items)
        total = self.per_rank * self.world_size
        if total > self.num_items:
            order = torch.cat([order, order[: total - self.num_items]])
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[SampleKey]:
        position = self.start
        epoch = -1
        order = torch.empty(0, dtype=torch.long)
        while True:
            e, offset = divmod(position, self.per_rank)
            if e != epoch:
                epoch, order = e, self._epoch_order(e)
            global_pos = offset * self.world_size + self.rank
            yield int(order[offset]), sample_seed(self.seed, epoch, global_pos)
            position += 1

    def __len__(self) -> int:
        return self.per_rank
