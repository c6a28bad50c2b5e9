"""Ablation row: the RR-interval features alone, no image (a class-balanced logistic regression).

    .venv/bin/python bench/rr_only_baseline.py --config configs/aami.toml --workdir runs/aami \
        [--out docs/results/aami/rr_only.json]

Reads the RR columns of the split folders' manifest.csv (stages 1-2 of the AAMI profile), fits on
train_images' beats with the training split's standardisation, and scores the validation split
(DS1 records) and the test split (DS2) with the same metrics as stage 4. Nothing is tuned: one
fixed model (sklearn's LogisticRegression, class_weight="balanced"), so the DS2 row is held out.
"""
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ecg import config, evaluation, files, split  # noqa: E402
from ecg.errors import UserError, main_guard  # noqa: E402
from jetson.rr_features import FEATURES  # noqa: E402


def load(folder):
    manifest = Path(folder) / "manifest.csv"
    if not manifest.is_file():
        raise UserError(f"{manifest}: not found (run stages 1-2 of the AAMI profile)")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or any(k not in rows[0] for k in FEATURES):
        raise UserError(f"{manifest}: no RR feature columns (preprocess.rr_features = true in stage 1)")
    return np.array([[float(r[k]) for k in FEATURES] for r in rows]), [r["class"] for r in rows]


@main_guard
def main():
    from sklearn.linear_model import LogisticRegression

    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--out", help="JSON file for the results (default: print only)")
    args = p.parse_args()
    cfg = config.load(args)
    train_dir, val_dir, test_dir = split.checked_dirs(cfg)
    x, y = load(train_dir)
    mean, std = x.mean(0), x.std(0)
    clf = LogisticRegression(class_weight="balanced", max_iter=5000).fit((x - mean) / std, y)
    classes = sorted(set(y))
    out = {"model": "LogisticRegression(class_weight='balanced') on the 7 standardised RR features",
           "train_beats": len(y)}
    for name, folder in (("val", val_dir), ("test", test_dir)):
        xs, ys = load(folder)
        pred = clf.predict((xs - mean) / std)
        idx = {c: i for i, c in enumerate(classes)}
        m = evaluation.metrics([idx[c] for c in ys], [idx[c] for c in pred], classes)
        print(f"--- {name} ({folder})\n{evaluation.format_report(m)}")
        out[name] = {k: v for k, v in m.items() if k != "report"}
    if args.out:
        files.write_text(Path(args.out), json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
