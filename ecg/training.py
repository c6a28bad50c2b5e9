"""One training loop and one evaluation, shared by training (stage 3), pruning fine-tuning
(stage 5) and QAT (stage 6), in the spirit of torchvision's references/classification."""
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

from . import distributed, files
from .dataset import batches, epoch_order, take
from .errors import UserError
from .inference import forward, pick_device, predict, to_device  # noqa: F401 (also training.X)
from .model import snapshot


def setup(seed, threads=0):
    """Seeded and deterministic (the thesis: seed 0, cuDNN deterministic; docs/design.md)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads:
        torch.set_num_threads(threads)


def start(section, *writable, processes=True):
    """The set-up every training stage makes first: seeded and deterministic (setup), its device
    (one per process under torchrun where `processes`, else pick_device), and the output folders
    proven writable before any work. Returns (device, main process?)."""
    setup(section["seed"], section["threads"])
    device = (distributed.init(section["device"]) if processes else None) or pick_device(section["device"])
    for folder in writable:
        files.check_writable(folder)
    return device, distributed.is_main()


CLASS_WEIGHTS = ("inverse", "sqrt", "none")


def class_weights(dataset, max_per_class=0, kind="inverse"):
    """Inverse-frequency weights (1 / count of each class in the training set), as the thesis;
    with a per-epoch cap, 1 / the count an epoch actually sees. `kind` "sqrt" takes
    1 / sqrt(count) (a milder push towards rare classes), "none" no weights."""
    counts = dataset.counts().double()
    if max_per_class:
        counts = counts.clamp(max=max_per_class)
    if kind not in CLASS_WEIGHTS:
        raise UserError(f"train.class_weight = '{kind}': expected one of {', '.join(CLASS_WEIGHTS)}")
    if kind == "none":
        return None
    counts = counts.clamp(min=1)
    return (1.0 / (counts.sqrt() if kind == "sqrt" else counts)).float()


def train_one_epoch(model, criterion, optimizer, data, device, batch_size, generator, desc="train",
                    max_per_class=0, freeze_bn=False):
    """One epoch; `batch_size` is the global batch. Under torchrun every process draws the same
    order and takes rows rank::world of each global batch; its loss is its share of the global
    batch's class-weighted mean (times world, as DDP averages gradients), so the update equals a
    single process's on the same global batch (up to BatchNorm statistics and dropout masks,
    which are per process; docs/design.md). freeze_bn: BatchNorm layers normalise with their
    running statistics and do not update them (their scale and shift still learn)."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    world, rank = distributed.world_size(), distributed.rank()
    total_loss, correct, seen = 0.0, 0, 0
    order = epoch_order(data.targets, generator, max_per_class)
    n_batches = math.ceil(len(order) / batch_size)
    if world == 1:
        steps = batches(data, batch_size, order=order)
    else:  # a last global batch with fewer images than processes is skipped by all alike
        steps = ((take(data, g[rank::world]), g) for g in torch.split(order, batch_size) if len(g) >= world)
    bar = tqdm(steps, total=n_batches, desc=desc, unit="batch", mininterval=2, disable=not distributed.is_main())
    for step in bar:
        if world == 1:
            (x, y), share = step, 1.0
        else:
            (x, y), g = step
        x, y = to_device(x, device), y.to(device)
        out = forward(model, x)
        if world == 1:
            loss = criterion(out, y)
        else:
            w = criterion.weight
            g_weight = float(len(g)) if w is None else w.cpu()[data.targets[g]].sum().item()
            loss = nn.functional.cross_entropy(out, y, weight=w, reduction="sum") * world / g_weight
            share = len(g) / world / max(len(y), 1)  # this process's part of the logged global loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y) * share
        correct += (out.argmax(1) == y).sum().item()
        seen += len(y)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}")
    if world > 1:
        total_loss, correct, seen = distributed.all_sum([total_loss, correct, seen])
    return total_loss / seen, correct / seen


@torch.no_grad()
def recalibrate_batchnorm(model, data, device, n_batches, batch_size, generator):
    """Re-estimate every BatchNorm's running mean/variance on `n_batches` training batches (a
    plain average, momentum None), weights untouched. torchvision's EfficientNet uses momentum
    0.01, so after a short run the running statistics are still mostly their initial values and
    evaluation is far below training accuracy; this makes them those of the current weights."""
    model = distributed.unwrap(model)  # every process the same batches: the same statistics
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or n_batches <= 0:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    for i, (x, _) in enumerate(batches(data, batch_size, shuffle=True, generator=generator)):
        if i == n_batches:
            break
        forward(model, to_device(x, device))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    model.train(was_training)


def evaluate(model, criterion, data, device, batch_size=256, desc="val", keep=None):
    """(loss, accuracy, macro F1) on `data`; `keep` (a list) also gets the logits."""
    from sklearn.metrics import f1_score

    logits = predict(model, data, device, batch_size, desc)  # on the CPU
    if keep is not None:
        keep.append(logits)
    weight = None if criterion.weight is None else criterion.weight.cpu()
    loss = nn.functional.cross_entropy(logits, data.targets, weight=weight).item()
    pred = logits.argmax(1)
    acc = (pred == data.targets).float().mean().item()
    f1 = f1_score(data.targets.numpy(), pred.numpy(), labels=list(range(len(data.classes))), average="macro",
                  zero_division=0)
    return loss, acc, float(f1)


SELECT = ("val_acc", "val_macro_f1", "last")  # last: the final epoch (its count chosen by cross-validation)


def fit(model, train_data, val_data, cfg_train, device, ckpt_path, log_path, resume=False,
        lr=None, epochs=None, step_size=None, gamma=None, desc="epoch", on_epoch=None):
    """Train with class-weighted cross-entropy, Adam and StepLR; checkpoint every epoch.
    `on_epoch(epoch, val_logits)` is called after each epoch's validation (cross-validation keeps
    every epoch's out-of-fold predictions this way), before the checkpoint is written.

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
    cap, select, recal = t.get("max_per_class", 0), t.get("select", "val_acc"), t.get("bn_recalibrate_batches", 0)
    weighting = t.get("class_weight", "inverse")
    freeze = t.get("freeze_bn", False)
    recal = 0 if freeze else recal   # frozen statistics are not re-estimated either
    if select not in SELECT:
        raise UserError(f"train.select = '{select}': expected one of {', '.join(SELECT)}")
    fingerprint = {"start_weights": state_hash(model.state_dict()), "classes": list(train_data.classes),
                   "train_images": len(train_data), "val_images": len(val_data), "lr": lr,
                   "step_size": step_size, "gamma": gamma, "batch_size": t["batch_size"], "seed": t["seed"]}
    # settings that are off in the thesis enter the fingerprint only when on (old checkpoints stay valid)
    fingerprint.update({k: v for k, v in (("max_per_class", cap), ("select", select), ("bn_recalibrate_batches", recal),
                                           ("class_weight", weighting if weighting != "inverse" else None),
                                           ("freeze_bn", freeze),
                                           ("rr_features", getattr(train_data, "rr_features", None)),
                                           ("image_channels", train_data.images.shape[1] if train_data.images.dim() == 4
                                            else None),
                                           ("image_difference", getattr(model, "difference", False)))
                        if v and v != "val_acc"})
    model.to(device, memory_format=torch.channels_last)  # before the optimizer: its state follows the weights
    main = distributed.is_main()
    weights = class_weights(train_data, cap, weighting)
    weights = None if weights is None else weights.to(device)
    criterion = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size or 10**9, gamma=gamma)
    history, best, start = [], None, 0
    ckpt_path = Path(ckpt_path)
    distributed.barrier()  # a checkpoint rank 0 is writing is complete before anyone reads it
    if resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ck.get("classes") != list(train_data.classes):
            raise UserError(f"{ckpt_path}: checkpoint was trained on classes {ck.get('classes')}, the data has "
                            f"{train_data.classes}; delete it or train without --resume")
        changed = sorted(k for k in fingerprint if ck.get("fingerprint", {}).get(k) != fingerprint[k])
        if changed and main:
            print(f"{ckpt_path}: not resumed, it was made with another {', '.join(changed)}; starting afresh")
        elif not changed:
            try:
                model.load_state_dict(ck["model"])
            except RuntimeError as e:
                raise UserError(f"{ckpt_path}: does not fit this model ({str(e).splitlines()[0][:200]})") from None
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            history, best, start = ck["history"], ck["best"], ck["epoch"]
            if main:
                print(f"resuming after epoch {start} from {ckpt_path}")
    net = distributed.wrap(model, device)  # `model` stays the plain module: its state dict is saved
    if epochs == 0:  # nothing to train (e.g. QAT skipped): the model as given is the result
        best = {"epoch": 0, "val_acc": None, "state_dict": snapshot(model.state_dict())}
    for epoch in range(start, epochs):
        torch.manual_seed(t["seed"] + 1000 + epoch)  # dropout / stochastic depth
        gen = torch.Generator().manual_seed(t["seed"] + epoch)  # shuffle order
        t0, epoch_lr = time.perf_counter(), lr_of(scheduler)
        tr_loss, tr_acc = train_one_epoch(net, criterion, optimizer, train_data, device, t["batch_size"], gen,
                                          desc=f"{desc} {epoch + 1}/{epochs}", max_per_class=cap, freeze_bn=freeze)
        distributed.broadcast_buffers(model)  # BatchNorm statistics: rank 0's, everywhere
        if recal:
            recalibrate_batchnorm(model, train_data, device, recal, t["batch_size"],
                                  torch.Generator().manual_seed(t["seed"] + 2000 + epoch))
        kept = []
        va_loss, va_acc, va_f1 = evaluate(model, criterion, val_data, device, keep=kept)
        if on_epoch is not None:
            on_epoch(epoch + 1, kept[0])
        scheduler.step()
        row = {"epoch": epoch + 1, "lr": epoch_lr,
               "train_loss": tr_loss, "train_acc": tr_acc, "val_loss": va_loss, "val_acc": va_acc,
               "val_macro_f1": va_f1, "seconds": time.perf_counter() - t0}
        history.append(row)
        if best is None or select == "last" or row[select] > best.get(select, best["val_acc"]):
            best = {"epoch": epoch + 1, "val_acc": va_acc, "val_macro_f1": va_f1,
                    "state_dict": snapshot(model.state_dict())}
        if main:  # only rank 0 writes
            print(f"epoch {epoch + 1}: train loss {tr_loss:.4f} acc {tr_acc:.4f} | val loss {va_loss:.4f} "
                  f"acc {va_acc:.4f} macro F1 {va_f1:.4f} | {row['seconds']:.0f} s", flush=True)
            write_log(log_path, history)
            files.save_with(ckpt_path, lambda tmp: torch.save(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "history": history, "best": best, "epoch": epoch + 1, "classes": list(train_data.classes),
                 "fingerprint": fingerprint}, tmp))
        distributed.barrier()
    return history, best


def state_hash(state_dict):
    """SHA-256 of a state dict's tensors (names, shapes, values)."""
    h = hashlib.sha256()
    for k, v in state_dict.items():
        if torch.is_tensor(v):
            h.update(f"{k}:{tuple(v.shape)}:{v.dtype}".encode())
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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
