"""Small synthetic inputs shared by the tests."""
from pathlib import Path

import numpy as np

from ecg.scalogram import encode_png


def fake_scalograms(root, per_class=None, records=("100", "101", "102", "103", "104", "105"), seed=0):
    """root/<class>/<record>_<class>_<i>.png with class-dependent patterns; returns the root."""
    per_class = per_class or {"0": 40, "1": 30, "2": 20, "3": 10}
    rng = np.random.default_rng(seed)
    root = Path(root)
    for c, n in per_class.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 256, (100, 100), dtype=np.uint8)
            rec = records[(i + int(c)) % len(records)]
            (root / c / f"{rec}_{c}_{i}.png").write_bytes(encode_png(img))
    return root


def subset_with_manifest(full, scal, per_class):
    """Hard-link `per_class` beats of each class of stage 1's folder `full` into `scal` (spread
    evenly over the class), with the matching manifest rows and the settings stamp, so that
    stage 2 carries their features into the splits and later stages read stage 1's settings."""
    import csv
    import os

    full, scal = Path(full), Path(scal)
    kept = set()
    for cls_dir in sorted(p for p in full.iterdir() if p.is_dir() and not p.name.startswith(".")):
        pngs = sorted(cls_dir.glob("*.png"))
        (scal / cls_dir.name).mkdir(parents=True)
        for p in pngs[:: max(1, len(pngs) // per_class)][:per_class]:
            os.link(p, scal / cls_dir.name / p.name)
            kept.add(f"{cls_dir.name}/{p.name}")
    with open(full / "manifest.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["path"] in kept]
        fields = reader.fieldnames
    with open(scal / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)
    (scal / ".parts").mkdir()
    (scal / ".parts" / "settings.json").write_text((full / ".parts" / "settings.json").read_text())
    return scal


def _thesis_names():
    import tomllib

    with open(Path(__file__).resolve().parents[1] / "configs" / "thesis.toml", "rb") as f:
        return [c["label"] for c in tomllib.load(f)["schemes"]["thesis"]["classes"]]


# what the device's CSV calls the thesis classes 0..4 (the config's labels: Normal, LBBB, RBBB, PVC, Paced)
THESIS_NAMES = _thesis_names()


def record_excerpt(mitdb, record, n, folder):
    """The first n samples of a MIT-BIH record's lead 0 with its .atr, as the WFDB record
    folder/r<record> (16-bit, gain 200/mV as MIT-BIH); returns its path without extension."""
    import wfdb

    x = wfdb.rdrecord(str(Path(mitdb) / record), channels=[0], sampto=n).p_signal[:, 0]
    ann = wfdb.rdann(str(Path(mitdb) / record), "atr", sampto=n)
    name = "r" + record
    wfdb.wrsamp(name, fs=360, units=["mV"], sig_name=["MLII"], p_signal=x[:, None], fmt=["16"],
                adc_gain=[200.0], baseline=[0], write_dir=str(folder))
    wfdb.wrann(name, "atr", ann.sample, symbol=ann.symbol, write_dir=str(folder))
    return Path(folder) / name
