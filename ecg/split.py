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


def split_by_record(items, random_state=4, test_records=None, train_records=None, fractions=(0.8, 0.1, 0.1),
                    restarts=100):
    """Inter-patient split: every record goes to exactly one split.

    With `test_records` (e.g. de Chazal DS2) those records are the test set and validation
    records are drawn from `train_records` (DS1). Records are indivisible, so per-class shares
    can only approximate `fractions`: a seeded search (random feasible starts, then moving one
    record at a time while it helps) picks the assignment whose per-class shares are closest
    to them (sum of squared differences, every class weighted alike), under the constraint that
    every class held by enough records appears in every split.
    """
    rng = np.random.RandomState(random_state)
    records = sorted({rec for _, _, rec in items})
    classes = sorted({cls for _, cls, _ in items})
    row, col = {r: i for i, r in enumerate(records)}, {c: j for j, c in enumerate(classes)}
    counts = np.zeros((len(records), len(classes)))
    for _, cls, rec in items:
        counts[row[rec], col[cls]] += 1
    where = {}
    splits, target = list(SPLITS), np.array(fractions, dtype=float)
    if test_records is not None:
        where.update({r: "test" for r in test_records if r in row})
        allowed = set(train_records) if train_records is not None else set(records) - set(where)
        where.update({r: "unused" for r in records if r not in allowed and r not in where})
        splits, target = splits[:2], target[:2]
    target = target / target.sum()
    free = [r for r in records if r not in where]
    if free:
        best = _search_records(counts[[row[r] for r in free]], target, rng, restarts)
        where.update({r: splits[k] for r, k in zip(free, best)})
    return [where[rec] for _, _, rec in items]


def _search_records(counts, target, rng, restarts):
    """Split index per record (rows of `counts`, records x classes) minimising the squared
    distance of each class's split shares from `target`."""
    n_rec, n_split = len(counts), len(target)
    holders = counts > 0
    totals = np.maximum(counts.sum(0), 1)
    must = holders.sum(0) >= n_split       # classes that can be present in every split
    onehot = np.eye(n_split)

    def score(a):
        shares = onehot[a].T @ counts / totals          # splits x classes
        if ((shares[:, must] == 0).any()):
            return np.inf
        return float(((shares - target[:, None]) ** 2).sum())

    best, best_score = None, np.inf
    for _ in range(restarts):
        a = rng.choice(n_split, size=n_rec, p=target)
        for c in rng.permutation(np.flatnonzero(must)):     # make the start feasible
            for s in range(n_split):
                if not (holders[a == s, c]).any():
                    donors = [r for r in np.flatnonzero(holders[:, c])
                              if (a == a[r]).sum() > 1 and holders[a == a[r], c].sum() > 1]
                    if donors:
                        a[rng.choice(donors)] = s
        current = score(a)
        improved = True
        while improved:
            improved = False
            for r in rng.permutation(n_rec):
                for s in range(n_split):
                    if s == a[r]:
                        continue
                    old, a[r] = a[r], s
                    new = score(a)
                    if new < current - 1e-12:
                        current, improved = new, True
                    else:
                        a[r] = old
        if current < best_score:
            best, best_score = a.copy(), current
    if best is None:
        best = rng.choice(n_split, size=n_rec, p=target)
    return best


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
