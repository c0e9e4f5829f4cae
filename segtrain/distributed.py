"""torch.distributed for `torchrun --nproc_per_node=N segtrain ...` (one process per GPU, or gloo on CPUs).

Every rank trains on its slice of each global batch; DDP averages the gradients, the loss is normalised by the
labelled pixels of the whole global batch and the Dice loss's sums are the whole global batch's (so N processes
take exactly the step one process would; Lovasz-softmax is each rank's own batch's), validation
confusion matrices are summed across ranks, and only rank 0 writes checkpoints, logs and TensorBoard."""
import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def setup(device: torch.device) -> torch.device:
    """Joins the process group torchrun describes (WORLD_SIZE > 1); returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return torch.device("cuda", local_rank)
    dist.init_process_group("gloo")
    return device


def teardown() -> None:
    if world_size() > 1:
        dist.barrier()
        dist.destroy_process_group()


def broadcast(value):
    """Rank 0's value of any picklable object, on every rank."""
    if world_size() == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sums `tensor` over the ranks, in place; a no-op for one process."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_sum_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over the ranks as a new tensor that autograd follows: its gradient is summed back over
    the ranks, so a loss computed from global sums on every rank, with DDP averaging the gradients, steps exactly
    as one process would on the global batch. Only for world_size() > 1."""
    import torch.distributed.nn.functional as differentiable

    return differentiable.all_reduce(tensor, op=dist.ReduceOp.SUM)


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """The elementwise maximum over the ranks, in place; a no-op for one process."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


class RankSlice:
    """The part of each global batch of `global_batch` consecutive sampler items that belongs to this rank."""

    def __init__(self, sampler, global_batch: int, rank: int, world: int):
        self.sampler, self.global_batch, self.rank, self.world = sampler, global_batch, rank, world
        self.per_rank = global_batch // world

    def __iter__(self):
        batch = []
        for item in self.sampler:
            batch.append(item)
            if len(batch) == self.global_batch:
                yield from batch[self.rank * self.per_rank:(self.rank + 1) * self.per_rank]
                batch = []
