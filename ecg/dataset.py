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
    def __init__(self, root, classes=None, size=100, progress=True):
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
        images = np.empty((len(paths), size, size), np.uint8)
        for i, p in enumerate(tqdm(paths, desc=f"loading {self.root.name}", unit="img", disable=not progress,
                                   mininterval=1)):
            images[i] = read_image(p, size)
        self.images = torch.from_numpy(images)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.images[i].unsqueeze(0).float().div(255), self.targets[i]

    def counts(self):
        return torch.bincount(self.targets, minlength=len(self.classes))


def read_image(path, size=100):
    """One grayscale PNG as uint8 (size, size); a clear error for anything else."""
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise UserError(f"{path}: not a readable image (corrupt or not a PNG)")
    if image.ndim == 3:  # colour PNG: convert as PIL's convert("L") does
        from PIL import Image

        image = np.asarray(Image.open(path).convert("L"))
    if image.dtype != np.uint8:
        raise UserError(f"{path}: expected an 8-bit image, got {image.dtype}")
    if image.shape != (size, size):
        raise UserError(f"{path}: image is {image.shape[1]}x{image.shape[0]}, expected {size}x{size}")
    return image


def batches(dataset, batch_size, shuffle=False, generator=None):
    """(x, y) batches straight from the in-memory tensors: x float in [0, 1], shape (B, 1, H, W)."""
    n = len(dataset)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield dataset.images[idx].unsqueeze(1).float().div_(255), dataset.targets[idx]
