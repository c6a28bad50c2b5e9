"""A model run on data: the device to run on, batches moved there, logits of a whole dataset.
Below training (ecg/training.py) and evaluation (ecg/evaluation.py), which both use it."""
import math

import torch
from tqdm import tqdm

from . import distributed
from .dataset import batches
from .errors import UserError


def pick_device(name="auto"):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"train.device = '{name}': not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device = '{name}': no CUDA GPU is available here (use auto or cpu)")
    return device


def to_device(x, device):
    """An image batch, or an (image, rr) pair, on `device`."""
    if isinstance(x, (tuple, list)):
        return (to_device(x[0], device), *(t.to(device, non_blocking=True) for t in x[1:]))
    # channels_last: measurably faster convolutions on CPU (bench/bench_training.py)
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def forward(model, x):
    """The model's logits for an image batch or an (image, rr) pair."""
    return model(*x) if isinstance(x, tuple) else model(x)


@torch.no_grad()
def predict(model, data, device, batch_size=256, desc="eval"):
    """Logits for every image of `data`, in order. Under torchrun each process predicts rows
    rank::world and all of them get the whole result (the split is evaluated once)."""
    model = distributed.unwrap(model)
    model.eval()
    outs = []
    world, rank = distributed.world_size(), distributed.rank()
    order = torch.arange(rank, len(data), world)
    n_batches = math.ceil(len(order) / batch_size)
    for x, _ in tqdm(batches(data, batch_size, order=order), total=n_batches, desc=desc, unit="batch",
                     mininterval=2, leave=False, disable=not distributed.is_main()):
        outs.append(forward(model, to_device(x, device)).float().cpu())
    logits = torch.cat(outs) if outs else torch.empty(0)
    return distributed.gather_rows(logits, len(data))
