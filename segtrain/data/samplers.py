import torch
from torch.utils.data import Sampler


class InfiniteSampler(Sampler):
    """An endless run of epochs, epoch e a permutation drawn from (seed, e), read from position `start`.

    Iteration-based training draws batches from it; a run resumed at iteration i starts at i * batch_size and
    so sees exactly the batches the uninterrupted run would have."""

    def __init__(self, size: int, seed: int, start: int = 0):
        self.size, self.seed, self.start = size, seed, start

    def __iter__(self):
        epoch, offset = divmod(self.start, self.size)
        while True:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            yield from torch.randperm(self.size, generator=generator)[offset:].tolist()
            epoch, offset = epoch + 1, 0
