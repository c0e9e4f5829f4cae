import torch
from torch.utils.data import Sampler


class InfiniteSampler(Sampler):
    """An endless run of epochs, epoch e a permutation drawn from (seed, e), read from position `start`.

    Iteration-based training draws batches from it; a run resumed at iteration i starts at i * batch_size and
    so sees exactly the batches the uninterrupted run would have."""

    def __init__(self, size: int, seed: int, start: int = 0, with_position: bool = False):
        self.size, self.seed, self.start, self.with_position = size, seed, start, with_position

    def __iter__(self):
        """Dataset indices; with_position: (index, position in the endless run), which seeds that sample's random
        augmentation, so it is the same whichever worker loads it and after a resume."""
        epoch, offset = divmod(self.start, self.size)
        while True:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            for step, index in enumerate(torch.randperm(self.size, generator=generator)[offset:].tolist()):
                yield (index, epoch * self.size + offset + step) if self.with_position else index
            epoch, offset = epoch + 1, 0
