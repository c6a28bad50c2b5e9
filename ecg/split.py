"""Stage 2: stratified train/val/test split of the scalograms, by beat (thesis) or by record."""
import csv
import io
import os
import shutil
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from . import files
from .errors import UserError

SPLITS = ("train", "val", "test")


def list_images(scalogram_dir):
    """(path relative to scalogram_dir, class, record) for every PNG, in sorted order.

    The record comes from manifest.csv when present, else from the name <record>_<class>_<i>.png.
    """
    root = Path(scalogram_dir)
    if not root.is_dir():
        raise UserError(f"{root}: scalogram folder not found (run 1_preprocessing.py first)")
    records = {}
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as f:
            records = {row["path"]: row["record"] for row in csv.DictReader(f)}
    items = []
    for cls_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for png in sorted(cls_dir.glob("*.png")):
            rel = f"{cls_dir.name}/{png.name}"
            items.append((rel, cls_dir.name, records.get(rel) or png.name.split("_")[0]))
    if not items:
        raise UserError(f"{root}: no scalogram PNGs in <class>/ folders (run 1_preprocessing.py first)")
    return items


def split_random(items, test_size=0.2, random_state=4):
    """Thesis split: 80 % train, the rest halved into val and test, stratified by class."""
    idx = np.arange(len(items))
    labels = [c for _, c, _ in items]
    train, rest = train_test_split(idx, test_size=test_size, stratify=labels, random_state=random_state)
    val, test = train_test_split(rest, test_size=0.5, stratify=[labels[i] for i in rest],
                                 random_state=random_state)
    return _assign(len(items), train, val, test)


def _assign(n, train, val, test):
    out = np.empty(n, dtype=object)
    out[train], out[val], out[test] = "train", "val", "test"
    return out.tolist()


def split_by_record(items, random_state=4, test_records=None, train_records=None):
    """Inter-patient split: every record goes to exactly one split.

    With `test_records` (e.g. de Chazal DS2) those records are the test set and validation
    records are drawn from `train_records` (DS1). Otherwise, class by class (rarest first),
    one still-free record holding that class goes to test, one to val, the rest to train, so
    that every class appears in every split where it has enough records.
    """
    rng = np.random.RandomState(random_state)
    by_class = {}
    for _, cls, rec in items:
        by_class.setdefault(cls, set()).add(rec)
    where = {}
    if test_records is not None:
        present = {rec for _, _, rec in items}
        where.update({r: "test" for r in test_records if r in present})
        allowed = set(train_records) if train_records is not None else present - set(where)
        for r in present - allowed - set(where):
            where[r] = "unused"
        wanted = ("val",)
    else:
        wanted = ("test", "val")
    for cls in sorted(by_class, key=lambda c: (len(by_class[c]), c)):
        free = sorted(by_class[cls] - set(where))
        rng.shuffle(free)
        have = {where[r] for r in by_class[cls] if r in where}
        for split in wanted:
            if split not in have and len(free) > 1:
                where[free.pop(0)] = split
    return [where.get(rec, "train") for _, _, rec in items]


def shared_records(items, assignment):
    recs = {s: {rec for (_, _, rec), a in zip(items, assignment) if a == s} for s in SPLITS}
    return recs, recs["train"] & recs["test"]


def place(items, assignment, src_root, dest_dirs):
    """Hard-link (or copy) each image into its split folder; each folder is built beside the
    old one and swapped in, so an interrupted run never leaves a half-made split."""
    src_root = Path(src_root)
    staging = {s: Path(str(d) + ".building") for s, d in dest_dirs.items()}
    for d in staging.values():
        shutil.rmtree(d, ignore_errors=True)
    link = True
    for (rel, cls, _), split in zip(items, assignment):
        if split not in staging:
            continue
        dst = staging[split] / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if link:
            try:
                os.link(src_root / rel, dst)
                continue
            except OSError:
                link = False  # another file system, or links not allowed: copy from now on
        shutil.copy2(src_root / rel, dst)
    for s, d in dest_dirs.items():
        d = Path(d)
        staging[s].mkdir(parents=True, exist_ok=True)
        if d.exists():
            old = Path(str(d) + ".old")
            shutil.rmtree(old, ignore_errors=True)
            d.rename(old)
            staging[s].rename(d)
            shutil.rmtree(old)
        else:
            staging[s].rename(d)
    return "hard links" if link else "copies"


def write_split_csv(path, items, assignment):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "split", "record", "class"])
    for (rel, cls, rec), split in zip(items, assignment):
        w.writerow([rel, split, rec, cls])
    files.write_text(path, buf.getvalue())
