"""RR-interval features (issue: a classifier for new patients): their plain definition, causality,
stage 1's manifest columns on a real record, the AAMI split protocol, the fused model and its
refusals of data without RR features."""
import csv

import numpy as np
import pytest
import torch

from conftest import run_script
from ecg import beats as B
from ecg import config, dataset, model, preprocess, records, split, training
from ecg.errors import UserError
from helpers import fake_scalograms
from jetson import rr_features as rr


def plain_rr(peaks, fs, local=10, window=300.0):
    """The features as the module docstring defines them, one beat at a time."""
    t = [p / fs for p in peaks]
    out = []
    for i in range(len(t)):
        prev = t[i] - t[i - 1] if i > 0 else t[1] - t[0]
        nxt = t[i + 1] - t[i] if i + 1 < len(t) else t[i] - t[i - 1]
        prevs = [(t[j] - t[j - 1]) if j > 0 else t[1] - t[0] for j in range(i + 1)]
        loc = sum(prevs[max(0, i - local + 1):]) / len(prevs[max(0, i - local + 1):])
        recent = [prevs[j] for j in range(i + 1) if t[j] > t[i] - window]
        pat = sum(recent) / len(recent)
        out.append([prev, nxt, loc, pat, prev / pat, nxt / pat, loc / pat])
    return np.array(out)


def test_features_equal_their_plain_definition():
    rng = np.random.default_rng(1)
    peaks = np.cumsum(rng.integers(150, 500, 2500))  # ~1 h at 360 Hz: the 5-minute window slides
    assert np.allclose(rr.rr_features(peaks, 360), plain_rr(peaks, 360), rtol=1e-12, atol=1e-12)


def test_features_are_in_seconds_whatever_the_rate():
    peaks = np.array([100, 460, 800, 1180, 1500])
    assert np.allclose(rr.rr_features(peaks, 360), rr.rr_features(peaks * 250 / 360, 250))
    assert rr.rr_features(peaks, 360)[1, 0] == pytest.approx(1.0)


def test_features_refuse_too_few_or_unordered_beats():
    with pytest.raises(ValueError):
        rr.rr_features([100], 360)
    with pytest.raises(ValueError):
        rr.rr_features([100, 90, 300], 360)


def _record(mitdb, rec="208"):
    x, samples, symbols = records.read_record(mitdb, rec, 0, 360, False)
    return B.remove_baseline(x, 360), samples, symbols


def test_a_beat_does_not_see_beyond_its_next_beat(mitdb):
    filtered, samples, symbols = _record(mitdb)
    full = preprocess.beat_features(filtered, samples, symbols, 360, 18)[0]
    peaks = sorted(full)
    i = 1000
    cut = peaks[i + 1] + 300  # beyond the next beat's alignment window and the baseline filters
    altered = filtered.copy()
    altered[cut:] = np.random.default_rng(0).normal(0, 5, len(altered) - cut)  # later samples: noise
    keep = samples < cut
    later = preprocess.beat_features(altered, samples[keep], symbols[keep], 360, 18)[0]
    for p in peaks[:i + 1]:
        assert np.array_equal(full[p], later[p])
    last = max(later)  # control: the last beat kept lost its next beat, so its features changed
    assert not np.array_equal(full[last], later[last])


def test_stage1_manifest_holds_the_features_of_a_hand_computation(mitdb, tmp_path):
    out = tmp_path / "scal"
    run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", "119", "--classes", "aami", "--out", out,
               "--set", "preprocess.rr_features=true", "--workers", "1")
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0])[-7:] == list(rr.FEATURES)
    # by hand: every beat annotation of the record (not only kept classes), aligned as stage 1 does
    filtered, samples, symbols = _record(mitdb, "119")
    is_beat = np.isin(symbols, list("NLRBAaJSVrFejnE/fQ?"))
    aligned = [int(max(s - 18, 0) + np.argmax(filtered[max(s - 18, 0):s + 18])) for s in samples[is_beat]]
    aligned = sorted(set(aligned))
    expected = dict(zip(aligned, plain_rr(aligned, 360)))
    for row in rows:
        got = np.array([float(row[k]) for k in rr.FEATURES])
        assert np.allclose(got, expected[int(row["sample"])], rtol=1e-12), row["path"]
    # V beats of 119 (bigeminy) come early: shorter previous RR than the patient's mean
    rel = {c: np.mean([float(r["rr_prev_rel"]) for r in rows if r["class"] == c]) for c in ("N", "V")}
    assert rel["V"] < 0.9 < rel["N"]


def test_thesis_manifest_is_unchanged_without_the_option(mitdb, tmp_path):
    run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", "232", "--out", tmp_path, "--workers", "1")
    with open(tmp_path / "manifest.csv") as f:
        assert f.readline().strip() == ",".join(preprocess.MANIFEST_FIELDS)
    assert "rr_features" not in preprocess.stored_settings(tmp_path)


def test_aami_profile_trains_on_ds1_and_tests_on_exactly_ds2():
    cfg = config.load(config.parser("").parse_args(["--config", "configs/aami.toml"]))
    sp, recs = cfg["split"], cfg.scheme["records"]
    rng = np.random.default_rng(0)
    items = [(f"{c}/{r}_{c}_{i}.png", c, r) for r in recs for c in "NSVF" for i in range(int(rng.integers(1, 30)))]
    a = split.split_by_record(items, sp["random_state"], test_records=sp["ds2"], train_records=sp["ds1"])
    by = {s: {r for (_, _, r), x in zip(items, a) if x == s} for s in ("train", "val", "test")}
    assert by["test"] == set(sp["ds2"])
    assert by["train"] | by["val"] == set(sp["ds1"]) and by["val"] and not by["train"] & by["val"]
    assert cfg["preprocess"]["rr_features"] and cfg["model"]["rr_features"]
    assert not set(sp["ds1"]) & set(sp["ds2"]) and not {"102", "104", "107", "217"} & set(recs)


def _split_with_rr(root, values=None):
    """A fake split folder whose manifest.csv carries RR columns."""
    fake_scalograms(root, {"0": 12, "3": 8})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "record", "class"] + list(rr.FEATURES))
        for i, p in enumerate(sorted(root.glob("*/*.png"))):
            v = values(i) if values else [0.8 if p.parent.name == "0" else 0.5] * 7
            w.writerow([f"{p.parent.name}/{p.name}", p.name.split("_")[0], p.parent.name] + v)
    return root


def test_dataset_loads_rr_beside_each_image(tmp_path):
    ds = dataset.ScalogramDataset(_split_with_rr(tmp_path), rr_features=rr.FEATURES, progress=False)
    (x, r), y = ds[0]
    assert x.shape == (1, 100, 100) and r.shape == (7,)
    assert torch.all(ds.rr[ds.targets == ds.classes.index("3")] == 0.5)
    assert torch.all(ds.rr[ds.targets == ds.classes.index("0")] == 0.8)
    (xb, rb), yb = next(dataset.batches(ds, 5))
    assert xb.shape == (5, 1, 100, 100) and rb.shape == (5, 7)


@pytest.mark.parametrize("bad,message", [
    ("no_manifest", "manifest.csv: not found"),
    ("no_columns", "no RR feature columns"),
    ("nan", "not finite"),
    ("text", "not numbers"),
])
def test_an_rr_model_refuses_data_without_valid_rr(tmp_path, bad, message):
    root = _split_with_rr(tmp_path, (lambda i: ["nan"] * 7) if bad == "nan" else
                          (lambda i: ["x"] * 7) if bad == "text" else None)
    if bad == "no_manifest":
        (root / "manifest.csv").unlink()
    if bad == "no_columns":
        text = (root / "manifest.csv").read_text().splitlines()
        (root / "manifest.csv").write_text("\n".join(",".join(l.split(",")[:5]) for l in text) + "\n")
    with pytest.raises(UserError, match=message):
        dataset.ScalogramDataset(root, rr_features=rr.FEATURES, progress=False)


def test_epoch_order_caps_large_classes_and_keeps_the_thesis_order_without_a_cap():
    targets = torch.tensor([0] * 50 + [1] * 5)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(dataset.epoch_order(targets, g()), torch.randperm(55, generator=g()))
    order = dataset.epoch_order(targets, g(), max_per_class=10)
    assert len(order) == 15 and len(set(order.tolist())) == 15
    assert (targets[order] == 0).sum() == 10 and (targets[order] == 1).sum() == 5
    assert not torch.equal(order, dataset.epoch_order(targets, torch.Generator().manual_seed(4), 10))


def test_fused_model_normalises_inside_and_round_trips(tmp_path):
    names = list(rr.FEATURES)
    net = model.build_model(4, rr_features=names).eval()
    mean, std = model.rr_statistics(torch.rand(50, 7) + 0.5)
    net.rr_mean.copy_(torch.tensor(mean)), net.rr_std.copy_(torch.tensor(std))
    x, r = torch.rand(3, 1, 100, 100), torch.rand(3, 7)
    out = net(x, r)
    assert out.shape == (3, 4)
    model.save(tmp_path / "m.pth", net.state_dict(), list("FNSV"), rr_features=names)
    net2, meta = model.load(tmp_path / "m.pth")
    assert meta["rr_features"] == names and meta["rr_std"] == pytest.approx(std)
    assert torch.equal(net2.eval()(x, r), out)
    # the RR values matter: the same image with other RR features gets other logits
    assert not torch.allclose(net(x, r * 2), out)


def test_bn_recalibration_gives_the_statistics_of_the_current_weights(tmp_path):
    ds = dataset.ScalogramDataset(fake_scalograms(tmp_path, {"0": 30, "1": 30}), progress=False)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3, momentum=0.01)).eval()
    training.recalibrate_batchnorm(net, ds, torch.device("cpu"), 100, 60, torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = net[0](ds.images.unsqueeze(1).float() / 255)
    bn = net[1]
    assert torch.allclose(bn.running_mean, y.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, y.var((0, 2, 3)), rtol=1e-3)
    assert bn.momentum == 0.01 and not net.training


def test_features_of_some_rows_are_those_rows_of_all():
    """rows=: a stream's newest beats only, the same numbers as the whole computation's rows."""
    rng = np.random.default_rng(4)
    peaks = np.cumsum(rng.integers(150, 500, 1200))
    whole = rr.rr_features(peaks, 360)
    for rows in ([0], [1199], [600, 601], list(range(0, 1200, 7))):
        assert np.array_equal(rr.rr_features(peaks, 360, rows=rows), whole[rows])
