"""Stage 2: stratified train/val/test split of the scalograms, by beat (thesis) or by record."""
import csv
import io
import os
import shutil
import uuid
from collections import Counter
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


def record_folds(records, classes, k, random_state=4, restarts=100):
    """{record: fold} for k-fold cross-validation grouped by record: every record in one fold,
    each class's beats shared as evenly over the folds as whole records allow (the same search
    as split_by_record), every class held by at least k records present in every fold.
    `records`, `classes`: one entry per beat."""
    recs = sorted(set(records))
    if len(recs) < k:
        raise UserError(f"{k} folds need at least {k} records, got {len(recs)}")
    names = sorted(set(classes))
    row, col = {r: i for i, r in enumerate(recs)}, {c: j for j, c in enumerate(names)}
    counts = np.zeros((len(recs), len(names)))
    for r, c in zip(records, classes):
        counts[row[r], col[c]] += 1
    best = _search_records(counts, np.full(k, 1.0 / k), np.random.RandomState(random_state), restarts)
    return {r: int(f) for r, f in zip(recs, best)}


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


STAMP = ".split_id"  # in each split folder: the id of the stage-2 run that made it


def place(items, assignment, src_root, dest_dirs, prepare=None):
    """Hard-link (or copy) each image into its split folder, replacing the three folders as one set.

    All three are built beside the old ones (`<folder>.building`, each with the same new split id
    in STAMP); `prepare(staged_dirs)` can add files to them. Then every old folder is moved aside
    before any new one is moved in, so an old and a new split never sit side by side: a run
    killed at any point leaves either a whole set or missing folders, which `check_set` (called
    by the later stages) reports. A re-run cleans up and builds the set again.
    """
    src_root = Path(src_root)
    dest_dirs = {s: Path(d) for s, d in dest_dirs.items()}
    staging = {s: Path(str(d) + ".building") for s, d in dest_dirs.items()}
    aside = {s: Path(str(d) + ".old") for s, d in dest_dirs.items()}
    for d in (*staging.values(), *aside.values()):
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
    split_id = uuid.uuid4().hex
    for d in staging.values():
        d.mkdir(parents=True, exist_ok=True)
        files.write_text(d / STAMP, split_id + "\n")
    if prepare is not None:
        prepare(staging)
    for s, d in dest_dirs.items():  # all old folders out first ...
        if d.exists():
            d.rename(aside[s])
    for s, d in dest_dirs.items():  # ... then all new ones in
        staging[s].rename(d)
    for d in aside.values():
        shutil.rmtree(d, ignore_errors=True)
    return "hard links" if link else "copies"


def split_id(folder):
    """The id in a split folder's STAMP (None for a folder without one, e.g. made by hand)."""
    try:
        return (Path(folder) / STAMP).read_text().strip() or None
    except FileNotFoundError:
        return None


def check_set(dest_dirs):
    """Refuse split folders that are not one stage-2 set: stamped folders with different ids, or
    a missing folder beside stamped ones or moved aside by a swap that did not finish (stage 2
    interrupted). Folders without a stamp (made by hand) are accepted."""
    dirs = {s: Path(d) for s, d in dest_dirs.items()}
    ids = {s: split_id(d) for s, d in dirs.items() if d.is_dir()}
    stamped = {i for i in ids.values() if i}
    missing = [str(d) for s, d in dirs.items() if s not in ids]
    swapping = any(Path(d + ".old").is_dir() for d in missing)
    if len(stamped) > 1 or (missing and (stamped or swapping)):
        why = "they come from different runs" if len(stamped) > 1 else f"{', '.join(missing)} missing"
        raise UserError(f"{', '.join(str(d) for d in dirs.values())}: not one split ({why}; stage 2 was "
                        "interrupted?); re-run 2_train_test_valid_split.py")


def checked_dirs(cfg, needed=SPLITS):
    """(train, val, test) folders of the config; those a stage reads (`needed`) checked to be
    one split (`check_set`)."""
    dirs = {s: cfg.path(f"{s}_dir") for s in SPLITS}
    check_set({s: dirs[s] for s in needed})
    return dirs["train"], dirs["val"], dirs["test"]


def write_split_manifests(scalogram_dir, items, assignment, dest_dirs):
    """Each split folder gets manifest.csv: stage 1's manifest rows of its images (RR features
    included when stage 1 made them), so a split folder carries everything its beats need."""
    manifest = Path(scalogram_dir) / "manifest.csv"
    if not manifest.is_file():
        return
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, {row["path"]: row for row in reader}
    for s, d in dest_dirs.items():
        buf = io.StringIO()
        w = csv.DictWriter(buf, fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows[rel] for (rel, _, _), a in zip(items, assignment) if a == s and rel in rows)
        files.write_text(Path(d) / "manifest.csv", buf.getvalue())


def write_split_csv(path, items, assignment):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "split", "record", "class"])
    for (rel, cls, rec), split in zip(items, assignment):
        w.writerow([rel, split, rec, cls])
    files.write_text(path, buf.getvalue())


def assign(cfg, items, aami):
    """The split of `items` the config asks for: split.mode "record" (no record in two splits;
    for the AAMI scheme (`aami`: the scheme stage 1 used) de Chazal's DS1 -> train/val, DS2 ->
    test) or "random" (the thesis: beats drawn at random, stratified)."""
    sp = cfg["split"]
    if sp["mode"] == "record":
        return split_by_record(items, sp["random_state"], test_records=sp["ds2"] if aami else None,
                               train_records=sp["ds1"] if aami else None)
    return split_random(items, sp["test_size"], sp["random_state"])


def summary(items, assignment, mode):
    """Images per split and class, records per split, records shared by train and test."""
    recs, shared = shared_records(items, assignment)
    counts = {s: dict(sorted(Counter(c for (_, c, _), a in zip(items, assignment) if a == s).items()))
              for s in SPLITS}
    return {"mode": mode, "images": len(items), "counts": counts, "records": {s: sorted(r) for s, r in recs.items()},
            "records_shared_train_test": sorted(shared)}


def format_summary(summary):
    lines = [f"{s:5s}: {sum(summary['counts'][s].values()):6d} images  {summary['counts'][s]}  "
             f"records: {len(summary['records'][s])}" for s in SPLITS]
    shared = summary["records_shared_train_test"]
    lines.append(f"records shared by train and test: {len(shared)}"
                 + (" (intra-patient split: the test score overstates new-patient accuracy)" if shared else ""))
    return "\n".join(lines)
