"""Leave-records-out cross-validation on DS1: how every new-patient choice is made.

    python -m ecg.crossval --config configs/aami.toml --workdir runs/aami --out runs/cv/base
    python -m ecg.crossval ... --set model.morph_features=true --out runs/cv/morph   # one change
    python -m ecg.crossval ... --features-only --out runs/cv/gbm_rr                   # no network

The beats of the training records (split.ds1) come straight from stage 1's folder (images and
manifest features); the records are dealt into `--folds` folds (split.record_folds: each class
spread as evenly as whole records allow). Each fold's network is trained on the other folds with
stage 3's loop and settings (training.fit: the same caps, class weights, BatchNorm handling) and
predicts its held-out records after every epoch, so each epoch gets out-of-fold predictions for
every DS1 beat. The figures (macro F1 over N,S,V and over N,S,V,F, per-class Se/+P/F1, the
per-record share of N beats called V or F) are pooled over all DS1 beats, epoch by epoch; the
number of epochs a final model trains is the one with the best pooled macro F1 (N,S,V). No DS2
beat is read. Resumable: each fold checkpoints every epoch and keeps its held-out logits.

--features-only fits a gradient-boosting classifier (scikit-learn, class-balanced) on the
per-beat features alone: a quick, network-free view of what an input carries.
"""
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import config, dataset, evaluation, files, model, preprocess, split, training
from .errors import UserError, main_guard

NSV = ("N", "S", "V")


class ArrayData:
    """A set of beats held in memory, shaped as training.fit expects of a ScalogramDataset."""

    def __init__(self, images, targets, rr, classes, rr_features):
        self.images, self.targets, self.rr = images, targets, rr
        self.classes, self.rr_features = list(classes), rr_features

    def __len__(self):
        return len(self.targets)

    def counts(self):
        return torch.bincount(self.targets, minlength=len(self.classes))

    def subset(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ArrayData(self.images[idx], self.targets[idx], None if self.rr is None else self.rr[idx],
                         self.classes, self.rr_features)


def load_beats(folder, records, classes, names, images=True):
    """(ArrayData, records per beat) of every beat of `records` in stage 1's `folder`."""
    import csv

    manifest = Path(folder) / "manifest.csv"
    if not manifest.is_file():
        raise UserError(f"{manifest}: not found (run 1_preprocessing.py first)")
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        missing = [n for n in (names or []) if n not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{manifest}: no feature columns {', '.join(missing)} (run 1_preprocessing.py with "
                            "the preprocess.*_features the model takes)")
        wanted = set(records)
        rows = [r for r in reader if r["record"] in wanted and r["class"] in classes]
    if not rows:
        raise UserError(f"{manifest}: no beats of the records {sorted(wanted)}")
    index = {c: i for i, c in enumerate(classes)}
    targets = torch.tensor([index[r["class"]] for r in rows])
    rr = None
    if names:
        rr = torch.from_numpy(np.array([[float(r[n]) for n in names] for r in rows], dtype=np.float32))
        if not torch.isfinite(rr).all():
            raise UserError(f"{manifest}: non-finite feature values")
    if images:
        arr = None
        for i, r in enumerate(tqdm(rows, desc="loading DS1 beats", unit="img", mininterval=2)):
            image = dataset.read_image(Path(folder) / r["path"])
            if arr is None:   # (n, H, W), or (n, 2, H, W) with the template channel
                arr = np.empty((len(rows),) + image.shape, np.uint8)
            arr[i] = image
        pixels = torch.from_numpy(arr)
    else:
        pixels = torch.zeros(len(rows), 1, 1, dtype=torch.uint8)
    return ArrayData(pixels, targets, rr, classes, names), np.array([r["record"] for r in rows])


def scores(y_true, y_pred, classes, records):
    """Pooled figures of one set of predictions: macro F1 over N,S,V and over all classes,
    per-class Se/+P/F1, and per record the share of its N beats called V or F."""
    m = evaluation.metrics(y_true, y_pred, classes)
    pc = m["per_class"]
    nsv = [c for c in NSV if c in classes]
    out = {"accuracy": m["accuracy"], "macro_f1_nsv": float(np.mean([pc[c]["f1"] for c in nsv])),
           "macro_f1": m["macro_f1"],
           "per_class": {c: {k: round(v, 4) for k, v in pc[c].items()} for c in classes},
           "confusion_matrix": m["confusion_matrix"]}
    if "N" in classes:
        n, bad = classes.index("N"), [classes.index(c) for c in ("V", "F") if c in classes]
        per_rec = {}
        for rec in sorted(set(records)):
            sel = (records == rec) & (y_true == n)
            if sel.any():
                per_rec[rec] = float(np.isin(y_pred[sel], bad).mean())
        out["n_called_vf"] = per_rec
        out["records_over_10pct_n_as_vf"] = sorted(r for r, v in per_rec.items() if v > 0.10)
    return out


def run_network(cfg, data, records, folds, out, resume=True):
    """Train one network per fold; returns {epoch: pooled scores} and the per-epoch seconds."""
    t = cfg["train"]
    device = training.pick_device(t["device"])
    epochs = t["epochs"]
    logits = {}   # (fold, epoch) -> held-out logits
    seconds = []
    for f in range(max(folds.values()) + 1):
        held = np.flatnonzero(np.array([folds[r] == f for r in records]))
        train = np.flatnonzero(np.array([folds[r] != f for r in records]))
        have = [e for e in range(1, epochs + 1) if (out / f"fold{f}_epoch{e}.npy").is_file()]
        if len(have) == epochs:
            logits.update({(f, e): torch.from_numpy(np.load(out / f"fold{f}_epoch{e}.npy")) for e in have})
            continue
        training.setup(t["seed"], t["threads"])
        tr, va = data.subset(train), data.subset(held)
        net = model.build_model(len(data.classes), cfg["model"]["arch"], rr_features=data.rr_features,
                                in_channels=dataset.channels(data.images[0]),
                                image_input=cfg["model"]["image_input"])
        if data.rr_features:
            mean, std = model.rr_statistics(tr.rr)
            net.rr_mean.copy_(torch.tensor(mean)), net.rr_std.copy_(torch.tensor(std))

        def keep(epoch, lg, f=f):
            np.save(out / f"fold{f}_epoch{epoch}.npy", lg.numpy())
            logits[(f, epoch)] = lg

        print(f"fold {f + 1}: train {len(tr)} beats, held out {len(va)} "
              f"({', '.join(sorted(r for r in folds if folds[r] == f))})", flush=True)
        history, _ = training.fit(net, tr, va, t, device, out / f"fold{f}.ckpt.pth", out / f"fold{f}_log.csv",
                                  resume=resume, desc=f"fold {f + 1} epoch", on_epoch=keep)
        seconds += [h["seconds"] for h in history]
        for e in range(1, epochs + 1):   # epochs done before a resume: their saved logits
            if (f, e) not in logits:
                logits[(f, e)] = torch.from_numpy(np.load(out / f"fold{f}_epoch{e}.npy"))
    y = data.targets.numpy()
    by_epoch = {}
    for e in range(1, epochs + 1):
        pred = np.empty(len(y), np.int64)
        for f in range(max(folds.values()) + 1):
            held = np.flatnonzero(np.array([folds[r] == f for r in records]))
            pred[held] = logits[(f, e)].argmax(1).numpy()
        by_epoch[e] = scores(y, pred, data.classes, records)
    return by_epoch, seconds


def run_features(data, records, folds, seed=0):
    """Out-of-fold predictions of a class-balanced gradient-boosting classifier on the features."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if data.rr is None:
        raise UserError("--features-only needs per-beat features (model.rr_features = true)")
    x, y = data.rr.numpy(), data.targets.numpy()
    pred = np.empty(len(y), np.int64)
    for f in range(max(folds.values()) + 1):
        held = np.array([folds[r] == f for r in records])
        clf = HistGradientBoostingClassifier(class_weight="balanced", random_state=seed, max_iter=200)
        clf.fit(x[~held], y[~held])
        pred[held] = clf.predict(x[held])
    return scores(y, pred, data.classes, records)


def format_table(summary):
    lines = [f"{summary['name']}: {summary['folds']}-fold CV grouped by record on DS1 "
             f"({summary['beats']} beats), pooled out-of-fold figures"]
    head = f"{'epoch':>5} {'acc':>7} {'F1 NSV':>7} {'F1 all':>7} " + " ".join(
        f"{c + ' Se':>6} {c + ' +P':>6} {c + ' F1':>6}" for c in summary["classes"]) + "  N->V/F>10%"
    lines.append(head)
    for e, s in summary["by_epoch"].items():
        pc = s["per_class"]
        lines.append(f"{e:>5} {s['accuracy']:7.4f} {s['macro_f1_nsv']:7.4f} {s['macro_f1']:7.4f} " + " ".join(
            f"{pc[c]['sensitivity']:6.3f} {pc[c]['positive_predictivity']:6.3f} {pc[c]['f1']:6.3f}"
            for c in summary["classes"]) + f"  {len(s.get('records_over_10pct_n_as_vf', []))}")
    lines.append(f"chosen: epoch {summary['chosen_epoch']} (best pooled macro F1 N,S,V)")
    return "\n".join(lines) + "\n"


@main_guard
def main(argv=None):
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for this run's fold checkpoints, logits and summary")
    p.add_argument("--folds", type=int, default=5, help="folds, grouped by record (default 5)")
    p.add_argument("--name", default=None, help="the run's name in the summary (default: --out's folder name)")
    p.add_argument("--features-only", action="store_true",
                   help="gradient boosting on the per-beat features alone (no network, no images)")
    p.add_argument("--blank-images", action="store_true",
                   help="ablation: the network's images are all zero, so only the per-beat features inform it")
    config.flag(p, "--epochs", "train.epochs", help="epochs per fold")
    args = p.parse_args(argv)
    cfg = config.load(args)
    out = Path(args.out)
    files.check_writable(out)
    scheme = cfg.scheme
    classes = [c["name"] for c in scheme["classes"]]
    ds1 = list(cfg["split"]["ds1"])
    names = model.rr_feature_names(cfg)
    data, records = load_beats(cfg.path("scalogram_dir"), ds1, classes, names,
                               images=not (args.features_only or args.blank_images))
    if args.blank_images:   # zeros of the stored images' shape: the same network, nothing to see
        size = int(cfg["preprocess"]["image_size"])
        shape = ((2,) if preprocess.made_with(cfg).get("template_channel") else ()) + (size, size)
        data.images = torch.zeros((1,) + shape, dtype=torch.uint8).expand((len(data),) + shape)
    folds = split.record_folds(records, [classes[i] for i in data.targets.tolist()], args.folds,
                               cfg["split"]["random_state"])
    # a resumed run reuses saved logits only if they were made by the same settings, folds and data
    fingerprint = {"settings": {k: cfg[k] for k in ("model", "train")}, "folds": folds, "beats": len(data),
                   "features": names, "features_only": args.features_only, "blank_images": args.blank_images,
                   "image_shape": list(data.images.shape[1:])}
    stamp = out / "cv_fingerprint.json"
    if stamp.is_file() and json.loads(stamp.read_text()) != json.loads(json.dumps(fingerprint)):
        raise UserError(f"{out}: holds a cross-validation run with other settings, folds or data; use another "
                        "--out (or delete the folder)")
    files.write_text(stamp, json.dumps(fingerprint, indent=1))
    t0 = time.perf_counter()
    summary = {"name": args.name or out.name, "folds": args.folds, "beats": len(data), "classes": classes,
               "fold_of_record": folds, "features": names,
               "settings": {k: cfg[k] for k in ("model", "train")}, "blank_images": args.blank_images}
    if args.features_only:
        summary["by_epoch"] = {0: run_features(data, records, folds, cfg["train"]["seed"])}
        summary["settings"] = {"model": "HistGradientBoostingClassifier(class_weight=balanced)", "features": names}
    else:
        summary["by_epoch"], secs = run_network(cfg, data, records, folds, out)
        summary["seconds_per_epoch"] = float(np.mean(secs)) if secs else None
    summary["chosen_epoch"] = max(summary["by_epoch"], key=lambda e: summary["by_epoch"][e]["macro_f1_nsv"])
    summary["seconds"] = time.perf_counter() - t0
    files.write_text(out / "cv_summary.json", json.dumps(summary, indent=1))
    table = format_table(summary)
    files.write_text(out / "cv_summary.txt", table)
    print(table, end="")


if __name__ == "__main__":
    main()
