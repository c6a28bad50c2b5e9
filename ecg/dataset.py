"""Scalogram split folders (root/<class>/*.png) decoded once into memory.

The thesis data is ~30k images of 100x100 bytes (~300 MB as uint8), so each split is decoded
once and kept as one uint8 tensor; epochs after the first read no files. Values equal PIL
grayscale + torchvision ToTensor (x / 255 as float32).
"""
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .errors import UserError


def class_folders(root):
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: split folder not found (run 2_train_test_valid_split.py first)")
    folders = sorted((p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=class_key)
    if not folders:
        raise UserError(f"{root}: empty split folder (no <class>/ subfolders)")
    return folders


def class_key(name):
    """Numeric class names sort as numbers (thesis: label = int(folder name)), others by name."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


class ScalogramDataset(torch.utils.data.Dataset):
    """`rr_features`: names of per-beat features to load beside each image from the split
    folder's manifest.csv (stage 2 copies stage 1's); items are then ((image, rr), label)."""

    def __init__(self, root, classes=None, size=100, progress=True, rr_features=None):
        self.root = Path(root)
        found = class_folders(self.root)
        self.classes = list(classes) if classes is not None else found
        if classes is not None and set(found) != set(self.classes):
            raise UserError(f"{self.root}: classes {found} differ from the model's {self.classes}")
        paths, labels = [], []
        for label, cls in enumerate(self.classes):
            pngs = sorted((self.root / cls).glob("*.png"))
            if not pngs:
                raise UserError(f"{self.root / cls}: class folder has no images")
            paths += pngs
            labels += [label] * len(pngs)
        self.paths = paths
        self.targets = torch.tensor(labels, dtype=torch.long)
        images = None
        for i, p in enumerate(tqdm(paths, desc=f"loading {self.root.name}", unit="img", disable=not progress,
                                   mininterval=1)):
            image = read_image(p, size)
            if images is None:   # (n, H, W) for one-channel images, (n, C, H, W) for beat + template
                images = np.empty((len(paths),) + image.shape, np.uint8)
            elif image.shape != images.shape[1:]:
                raise UserError(f"{p}: {channels(image)} channel(s), the folder's first image has "
                                f"{channels(images[0])}: one stage-1 run per folder")
            images[i] = image
        self.images = torch.from_numpy(images)
        self.rr_features = list(rr_features) if rr_features else None
        self.rr = read_rr(self.root, self.paths, self.rr_features) if self.rr_features else None

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        x = as_batch(self.images[i:i + 1])[0]
        return ((x, self.rr[i]) if self.rr is not None else x), self.targets[i]

    def counts(self):
        return torch.bincount(self.targets, minlength=len(self.classes))


def channels(image):
    return 1 if image.ndim == 2 else image.shape[0]


def as_batch(images):
    """Stored uint8 images (n, H, W) or (n, C, H, W) as the model's float input (n, C, H, W) in [0, 1]."""
    x = images.float().div_(255)
    return x.unsqueeze(1) if x.dim() == 3 else x


def read_image(path, size=100):
    """One grayscale PNG as uint8 (size, size), or a grey + alpha PNG (stage 1's beat + template,
    preprocess.template_channel) as (2, size, size); a clear error for anything else."""
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise UserError(f"{path}: not a readable image (corrupt or not a PNG)")
    if image.ndim == 3 and image.shape[2] == 4 and data[25] == 4:  # grey + alpha (OpenCV gives BGRA)
        image = np.ascontiguousarray(np.stack([image[:, :, 0], image[:, :, 3]]))
        if image.shape[1:] != (size, size):
            raise UserError(f"{path}: image is {image.shape[2]}x{image.shape[1]}, expected {size}x{size}")
        return image
    if image.ndim == 3:  # colour PNG: convert as PIL's convert("L") does
        from PIL import Image

        image = np.asarray(Image.open(path).convert("L"))
    if image.dtype != np.uint8:
        raise UserError(f"{path}: expected an 8-bit image, got {image.dtype}")
    if image.shape != (size, size):
        raise UserError(f"{path}: image is {image.shape[1]}x{image.shape[0]}, expected {size}x{size}")
    return image


def read_rr(root, paths, names):
    """(images, features) float32 tensor of the named RR features, row i for paths[i], from
    root/manifest.csv; a clear error when the folder has no such columns or values are bad."""
    import csv
    import math

    manifest = Path(root) / "manifest.csv"
    fix = ("run 1_preprocessing.py with preprocess.rr_features = true (and preprocess.morph_features = true for "
           "morphology features), then 2_train_test_valid_split.py")
    if not manifest.is_file():
        raise UserError(f"{manifest}: not found; the model takes RR features, which come from the split's "
                        f"manifest ({fix})")
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        missing = [n for n in names if n not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{manifest}: no RR feature columns {', '.join(missing)} ({fix})")
        rows = {row["path"]: row for row in reader}
    out = np.empty((len(paths), len(names)), np.float32)
    for i, p in enumerate(paths):
        rel = f"{p.parent.name}/{p.name}"
        row = rows.get(rel)
        if row is None:
            raise UserError(f"{manifest}: no row for {rel} (the folder and its manifest differ; re-run "
                            "2_train_test_valid_split.py)")
        try:
            values = [float(row[n]) for n in names]
        except ValueError:
            raise UserError(f"{manifest}: {rel}: RR features {[row[n] for n in names]} are not numbers") from None
        if not all(math.isfinite(v) for v in values):
            raise UserError(f"{manifest}: {rel}: RR features {values} are not finite")
        out[i] = values
    return torch.from_numpy(out)


def epoch_order(targets, generator, max_per_class=0):
    """The shuffled image order of one training epoch. With `max_per_class`, a class with more
    images contributes a fresh random subset of that many each epoch (e.g. N beats in DS1, ~45 k
    against ~1 k S): every image is still seen over the epochs, but an epoch costs far less."""
    n = len(targets)
    if not max_per_class:
        return torch.randperm(n, generator=generator)  # the thesis' order, draw for draw
    keep = []
    for c in torch.unique(targets).tolist():
        idx = torch.nonzero(targets == c).flatten()
        if len(idx) > max_per_class:
            idx = idx[torch.randperm(len(idx), generator=generator)[:max_per_class]]
        keep.append(idx)
    keep = torch.cat(keep)
    return keep[torch.randperm(len(keep), generator=generator)]


def batches(dataset, batch_size, shuffle=False, generator=None, order=None):
    """(x, y) batches straight from the in-memory tensors: x float in [0, 1], shape (B, 1, H, W),
    or the pair (x, rr) for a dataset with RR features. `order` overrides the image order."""
    n = len(dataset)
    if order is None:
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, len(order), batch_size):
        yield take(dataset, order[start:start + batch_size])


def take(dataset, idx):
    """(x, y) for the images `idx` (x as in `batches`)."""
    x = as_batch(dataset.images[idx])
    return (x if dataset.rr is None else (x, dataset.rr[idx])), dataset.targets[idx]
