"""The seeded sampler: the same order and augmentation seeds for any worker count and after a resume."""
from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler


class SeededSampler(Sampler):
    """Yields (index, seed) pairs: a seeded shuffle per epoch and one augmentation seed per sample.

    The seed of a sample depends only on (run seed, epoch, index), so augmentations are the same
    whatever the number of DataLoader workers, differ between samples and epochs, and a resumed run
    draws exactly what the uninterrupted run drew. With `world_size` > 1 each rank takes every
    `world_size`-th index of the shuffled order, padded to equal length as DistributedSampler does
    (`pad=False` for validation, where a repeated image would be counted twice).
    """

    def __init__(self, length: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 pad: bool = True) -> None:
        self.length, self.seed, self.shuffle = length, seed, shuffle
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and seeds are drawn next."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.pad:
            return -(-self.length // self.world_size)
        return len(range(self.rank, self.length, self.world_size))

    def __iter__(self):
        generator = np.random.default_rng([self.seed, self.epoch])
        order = generator.permutation(self.length) if self.shuffle else np.arange(self.length)
        if self.pad:
            order = np.resize(order, len(self) * self.world_size)
        order = order[self.rank::self.world_size]
        seeds = generator.integers(0, 2**63 - 1, size=self.length)
        for index in order.tolist():
            yield index, int(seeds[index])


