"""Data-parallel training under torchrun (torch.distributed), and nothing when run plainly.

    torchrun --nproc_per_node=2 3_training.py ...        # 2 processes on this machine

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `init()` joins the process group (nccl on GPUs,
gloo on CPUs) and every other function here is a no-op in a single process, so the scripts
behave exactly as before without torchrun. Only rank 0 writes files, logs, plots and
checkpoints (`is_main`); the others wait at `barrier()` where a file must exist before they go on.
"""
import os

import torch
import torch.distributed as dist


def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main():
    return rank() == 0


def init(device_name="auto"):
    """Join torchrun's process group when launched by it; return the torch device to use.

    A plain run returns None (the caller picks its device as before). Under torchrun on GPUs
    each process takes the GPU of its LOCAL_RANK.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return None
    cuda = torch.cuda.is_available() and device_name != "cpu"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if cuda else "gloo")
    return device


def barrier():
    if world_size() > 1:
        dist.barrier()


def all_sum(values):
    """Element-wise sum of a list of floats over all processes."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def gather_rows(part, n):
    """Rows i::world of an (n, ...) tensor from every process, reassembled in order (every
    process gets the whole tensor). Used to evaluate a split once, each process a share."""
    world = world_size()
    if world == 1:
        return part
    parts = [None] * world
    dist.all_gather_object(parts, part.cpu())
    out = torch.empty((n, *part.shape[1:]), dtype=part.dtype)
    for r, p in enumerate(parts):
        out[r::world] = p
    return out


def broadcast_buffers(model):
    """Rank 0's buffers (BatchNorm running statistics) copied to every process: after an
    epoch each process's statistics are those of its own shards."""
    if world_size() == 1:
        return
    for b in unwrap(model).buffers():
        dist.broadcast(b.data, 0)


def wrap(model, device):
    """DistributedDataParallel around `model` under torchrun, the model itself otherwise."""
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model):
    return model.module if hasattr(model, "module") and world_size() > 1 else model


def shutdown():
    if world_size() > 1:
        dist.destroy_process_group()
