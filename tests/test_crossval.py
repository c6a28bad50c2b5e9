"""Cross-validation grouped by record (ecg/crossval.py, split.record_folds): folds, pooled scores
against their plain definitions, and a short end-to-end run on fake beats."""
import csv
import json

import numpy as np
import pytest

from ecg import crossval, split
from ecg.errors import UserError


def test_record_folds_put_each_record_in_one_fold_and_every_class_in_every_fold():
    rng = np.random.RandomState(0)
    records, classes = [], []
    for r in range(22):
        n = rng.randint(50, 200)
        records += [f"r{r}"] * n
        classes += list(rng.choice(list("NNNNNNVS" if r % 3 else "NNNNVVFS"), n))
    folds = split.record_folds(records, classes, 5)
    assert set(folds) == set(records) and set(folds.values()) == set(range(5))
    for f in range(5):
        held = {c for r, c in zip(records, classes) if folds[r] == f}
        assert held == {"N", "S", "V", "F"}, f
    assert split.record_folds(records, classes, 5) == folds        # seeded: the same folds every run
    with pytest.raises(UserError, match="at least 5 records"):
        split.record_folds(["a", "b"], ["N", "V"], 5)


def test_scores_equal_their_plain_definitions():
    classes = ["N", "S", "V", "F"]
    y = np.array([0] * 10 + [1] * 4 + [2] * 4 + [3] * 2)
    p = np.array([0] * 8 + [2, 3] + [1, 1, 0, 0] + [2, 2, 2, 0] + [3, 0])
    rec = np.array(["a"] * 5 + ["b"] * 5 + ["a"] * 10)
    s = crossval.scores(y, p, classes, rec)

    def f1(c):
        tp = np.sum((y == c) & (p == c))
        return 2 * tp / (np.sum(y == c) + np.sum(p == c))

    assert s["macro_f1_nsv"] == pytest.approx(np.mean([f1(0), f1(1), f1(2)]))
    assert s["macro_f1"] == pytest.approx(np.mean([f1(c) for c in range(4)]))
    assert s["n_called_vf"] == {"a": 0.0, "b": pytest.approx(2 / 5)}   # record b: beats 8 (V) and 9 (F)
    assert s["records_over_10pct_n_as_vf"] == ["b"]


def test_a_short_cross_validation_run_on_fake_beats(tmp_path):
    """Stage-1-like folder of fake beats (images + 14 features) for 6 records; 3 folds, 2 epochs of
    the small network: out-of-fold figures per epoch, the chosen epoch, and a resumed run that
    reads the saved logits instead of training again."""
    from ecg import scalogram
    from jetson import morphology
    from jetson import rr_features as rr

    names = list(rr.FEATURES) + list(morphology.FEATURES)
    folder = tmp_path / "scalogram"
    rng = np.random.RandomState(1)
    rows = []
    for r, rec in enumerate(["101", "106", "108", "109", "112", "114"]):
        for i in range(24):
            c = "NSVF"[i % 4]
            (folder / c).mkdir(parents=True, exist_ok=True)
            path = f"{c}/{rec}_{c}_{i}.png"
            pair = rng.randint(0, 256, (100, 100, 2)).astype(np.uint8)
            (folder / path).write_bytes(scalogram.encode_png(pair))
            rows.append({"path": path, "record": rec, "class": c,
                         **{n: "NSVF".index(c) + rng.rand() for n in names}})
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "record", "class"] + names)
        w.writeheader()
        w.writerows(rows)
    args = ["--set", f'paths.scalogram_dir="{folder}"', "--set", 'preprocess.scheme="aami"',
            "--set", 'split.ds1=["101","106","108","109","112","114"]', "--set", "model.rr_features=true",
            "--set", "model.morph_features=true", "--set", 'model.arch="small_cnn"',
            "--set", 'model.image_input="difference"', "--set", "train.batch_size=16", "--set", "train.threads=1",
            "--set", "train.freeze_bn=true", "--set", "preprocess.template_channel=true",
            "--folds", "3", "--epochs", "2", "--out", str(tmp_path / "cv")]
    crossval.main(args)
    s = json.loads((tmp_path / "cv" / "cv_summary.json").read_text())
    assert s["beats"] == 144 and sorted(s["by_epoch"]) == ["1", "2"] and s["features"] == names
    assert s["chosen_epoch"] in (1, 2) and len(set(s["fold_of_record"].values())) == 3
    # the features give the class away: the out-of-fold predictions are far above chance
    assert s["by_epoch"][str(s["chosen_epoch"])]["accuracy"] > 0.5
    mtime = (tmp_path / "cv" / "fold0_epoch2.npy").stat().st_mtime
    crossval.main(args)   # resumed: every fold's logits are there, nothing is trained again
    assert (tmp_path / "cv" / "fold0_epoch2.npy").stat().st_mtime == mtime
    assert json.loads((tmp_path / "cv" / "cv_summary.json").read_text())["by_epoch"] == s["by_epoch"]
    # other settings into the same folder: refused, nothing of the earlier run is reused
    with pytest.raises(SystemExit) as e:
        crossval.main(args[:-4] + ["--folds", "2", "--out", str(tmp_path / "cv")])
    assert e.value.code == 2
    # the blank-image ablation feeds zeros of the stored images' shape (2 channels here)
    crossval.main(args[:-2] + ["--blank-images", "--out", str(tmp_path / "blank")])
    b = json.loads((tmp_path / "blank" / "cv_fingerprint.json").read_text())
    assert b["image_shape"] == [2, 100, 100] and b["blank_images"]
