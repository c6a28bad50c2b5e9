"""One training loop and one evaluation, shared by training (stage 4), pruning fine-tuning
(stage 5) and QAT (stage 6), in the spirit of torchvision's references/classification."""
import copy
import csv
import hashlib
import io
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import files
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


def setup(seed, threads=0):
    """Seeded and deterministic (SPEC: seed 0, cuDNN deterministic)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads:
        torch.set_num_threads(threads)


def class_weights(dataset):
    """Inverse-frequency weights (1 / count of each class in the training set), as the thesis."""
    counts = dataset.counts().double()
    return (1.0 / counts.clamp(min=1)).float()


def to_device(x, device):
    # channels_last: measurably faster convolutions on CPU (bench/bench_training.py)
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def train_one_epoch(model, criterion, optimizer, data, device, batch_size, generator, desc="train"):
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    n_batches = math.ceil(len(data) / batch_size)
    bar = tqdm(batches(data, batch_size, shuffle=True, generator=generator), total=n_batches, desc=desc,
               unit="batch", mininterval=2)
    for x, y in bar:
        x, y = to_device(x, device), y.to(device)
        out = model(x)
        loss = criterion(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        seen += len(y)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}")
    return total_loss / seen, correct / seen


@torch.no_grad()
def predict(model, data, device, batch_size=256, desc="eval"):
    """Logits for every image of `data`, in order."""
    model.eval()
    outs = []
    n_batches = math.ceil(len(data) / batch_size)
    for x, _ in tqdm(batches(data, batch_size), total=n_batches, desc=desc, unit="batch", mininterval=2,
                     leave=False):
        outs.append(model(to_device(x, device)).float().cpu())
    return torch.cat(outs)


def evaluate(model, criterion, data, device, batch_size=256, desc="val"):
    logits = predict(model, data, device, batch_size, desc)  # on the CPU
    weight = None if criterion.weight is None else criterion.weight.cpu()
    loss = nn.functional.cross_entropy(logits, data.targets, weight=weight).item()
    acc = (logits.argmax(1) == data.targets).float().mean().item()
    return loss, acc


def fit(model, train_data, val_data, cfg_train, device, ckpt_path, log_path, resume=False,
        lr=None, epochs=None, step_size=None, gamma=None, desc="epoch"):
    """Train with class-weighted cross-entropy, Adam and StepLR; checkpoint every epoch.

    Every epoch's shuffle and dropout draw from seeds fixed by (seed, epoch), so a run resumed
    from its checkpoint continues exactly as the uninterrupted run would. Returns the history
    and the best-on-validation state dict.
    """
    t = cfg_train
    lr = t["lr"] if lr is None else lr
    epochs = t["epochs"] if epochs is None else epochs
    step_size = t.get("step_size") if step_size is None else step_size
    gamma = t.get("gamma", 1.0) if gamma is None else gamma
    if epochs < 0:
        raise UserError(f"{desc}: epochs = {epochs}, expected 0 or more")
    # A checkpoint is only resumed if it started from the same weights, data and settings;
    # otherwise (say stage 3 was re-run before stage 5) it is stale and training starts afresh.
    fingerprint = {"start_weights": state_hash(model.state_dict()), "classes": list(train_data.classes),
                   "train_images": len(train_data), "val_images": len(val_data), "lr": lr,
                   "step_size": step_size, "gamma": gamma, "batch_size": t["batch_size"], "seed": t["seed"]}
    model.to(device, memory_format=torch.channels_last)  # before the optimizer: its state follows the weights
    weights = class_weights(train_data).to(device)
    criterion = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size or 10**9, gamma=gamma)
    history, best, start = [], None, 0
    ckpt_path = Path(ckpt_path)
    if resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ck.get("classes") != list(train_data.classes):
            raise UserError(f"{ckpt_path}: checkpoint was trained on classes {ck.get('classes')}, the data has "
                            f"{train_data.classes}; delete it or train without --resume")
        changed = sorted(k for k in fingerprint if ck.get("fingerprint", {}).get(k) != fingerprint[k])
        if changed:
            print(f"{ckpt_path}: not resumed, it was made with another {', '.join(changed)}; starting afresh")
        else:
            try:
                model.load_state_dict(ck["model"])
            except RuntimeError as e:
                raise UserError(f"{ckpt_path}: does not fit this model ({str(e).splitlines()[0][:200]})") from None
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            history, best, start = ck["history"], ck["best"], ck["epoch"]
            print(f"resuming after epoch {start} from {ckpt_path}")
    if epochs == 0:  # nothing to train (e.g. QAT skipped): the model as given is the result
        best = {"epoch": 0, "val_acc": None, "state_dict": snapshot(model.state_dict())}
    for epoch in range(start, epochs):
        torch.manual_seed(t["seed"] + 1000 + epoch)  # dropout / stochastic depth
        gen = torch.Generator().manual_seed(t["seed"] + epoch)  # shuffle order
        t0, epoch_lr = time.perf_counter(), lr_of(scheduler)
        tr_loss, tr_acc = train_one_epoch(model, criterion, optimizer, train_data, device, t["batch_size"], gen,
                                          desc=f"{desc} {epoch + 1}/{epochs}")
        va_loss, va_acc = evaluate(model, criterion, val_data, device)
        scheduler.step()
        row = {"epoch": epoch + 1, "lr": epoch_lr,
               "train_loss": tr_loss, "train_acc": tr_acc, "val_loss": va_loss, "val_acc": va_acc,
               "seconds": time.perf_counter() - t0}
        history.append(row)
        if best is None or va_acc > best["val_acc"]:
            best = {"epoch": epoch + 1, "val_acc": va_acc,
                    "state_dict": snapshot(model.state_dict())}
        print(f"epoch {epoch + 1}: train loss {tr_loss:.4f} acc {tr_acc:.4f} | val loss {va_loss:.4f} "
              f"acc {va_acc:.4f} | {row['seconds']:.0f} s", flush=True)
        write_log(log_path, history)
        files.save_with(ckpt_path, lambda tmp: torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "history": history, "best": best, "epoch": epoch + 1, "classes": list(train_data.classes),
             "fingerprint": fingerprint}, tmp))
    return history, best


def state_hash(state_dict):
    """SHA-256 of a state dict's tensors (names, shapes, values)."""
    h = hashlib.sha256()
    for k, v in state_dict.items():
        if torch.is_tensor(v):
            h.update(f"{k}:{tuple(v.shape)}:{v.dtype}".encode())
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def snapshot(state_dict):
    """A CPU copy of a state dict; AIMET's quantizers add non-tensor extra state, kept as is."""
    return {k: v.detach().cpu().clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in state_dict.items()}


def lr_of(scheduler):
    return scheduler.optimizer.param_groups[0]["lr"]


def write_log(path, history):
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(history[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    files.write_text(path, buf.getvalue())


def plot_history(path, history, title=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h["val_loss"] for h in history], "o-", label="val")
    a.set(xlabel="epoch", ylabel="loss (class-weighted CE)", title=f"{title} loss")
    b.plot(ep, [h["train_acc"] for h in history], "o-", label="train")
    b.plot(ep, [h["val_acc"] for h in history], "o-", label="val")
    b.set(xlabel="epoch", ylabel="accuracy", title=f"{title} accuracy")
    for ax in (a, b):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    files.save_with(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"), suffix=".png")
    plt.close(fig)
