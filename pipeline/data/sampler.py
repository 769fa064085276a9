"""The order of training samples, resumable in the middle of an epoch and shardable across processes.

torch's ``DistributedSampler`` cannot start part-way through an epoch, and its indices carry
no seed for augmentation. Here each epoch's order and each sample's augmentation seed are a
function of (seed, epoch) alone, so a resumed run sees exactly the samples, in the order and
with the augmentation, that the interrupted run would have seen next.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(index, seed)`` for one epoch: this rank's share of a seeded permutation, from ``start`` on.

    The permutation is padded by wrapping around so that every rank gets the same number of
    samples (DistributedDataParallel needs equal step counts on all ranks).
    """

    def __init__(self, size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size, self.seed, self.epoch = size, seed, epoch
        self.rank, self.world_size, self.start = rank, world_size, start

    def per_rank(self) -> int:
        return -(-self.size // self.world_size)

    def __len__(self) -> int:
        return max(0, self.per_rank() - self.start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.size)
        seeds = rng.integers(0, 2**31 - 1, size=self.size)
        padded = np.resize(order, self.per_rank() * self.world_size)
        mine = padded[self.rank::self.world_size][self.start:]
        for index in mine:
            yield int(index), int(seeds[index])
