"""The signal-quality gate (--quality): the indices against their plain definitions, the second QRS
detector, stream == batch, clean records kept readable, invented beats in noise marked U, the CSV
column and U labels end to end through infer_trt.py (the shipped models/aami float ONNX, ONNX
Runtime), and a recording of noise alone refused."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from bench import nst_noise
from jetson import qrs_second, quality, quality_gate, scoring, streaming
from test_jetson import infer

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "aami"
OP = {"fs": np.array(360), "before": np.array(90), "after": np.array(110), "align_halfwidth_s": np.array(0.05),
      "baseline_windows_s": np.array([0.2, 0.6])}


# -- the indices, by hand ------------------------------------------------------------------------
def test_kurtosis_is_the_standardised_fourth_moment():
    assert quality.kurtosis([1, -1, 1, -1]) == 1.0
    # mean 1, deviations (-1, -1, -1, -1, 4): variance 20 / 5 = 4, fourth moment 260 / 5 = 52
    assert quality.kurtosis([0, 0, 0, 0, 5]) == 52 / 16.0
    assert quality.kurtosis([2.0, 2.0, 2.0]) == 0.0
    assert abs(quality.kurtosis(np.random.default_rng(0).standard_normal(200000)) - 3.0) < 0.1


def test_power_ratio_of_sinusoids():
    fs = 360.0
    t = np.arange(3600) / fs        # 10 s: every frequency below falls on an FFT bin
    s = lambda hz: np.sin(2 * np.pi * hz * t)  # noqa: E731
    assert quality.power_ratio(s(10), fs) == pytest.approx(1.0)
    assert quality.power_ratio(s(30), fs) == pytest.approx(0.0, abs=1e-12)
    assert quality.power_ratio(s(10) + s(30), fs) == pytest.approx(0.5)
    assert quality.power_ratio(s(2), fs) == pytest.approx(0.0, abs=1e-9)   # nothing in 5-40 Hz


def test_band_limited_keeps_the_band_and_drops_a_line():
    fs = 360.0
    t = np.arange(3600) / fs
    ecg_band = np.sin(2 * np.pi * 10 * t)
    out = quality.band_limited(3.0 + 2.0 * t + ecg_band + 0.5 * np.sin(2 * np.pi * 60 * t), fs, (1.0, 40.0))
    inner = slice(180, -180)   # a brick-wall filter rings near the window's ends
    assert np.allclose(out[inner], ecg_band[inner], atol=0.06)
    assert np.allclose(quality.band_limited(np.full(100, 7.0), fs, (1.0, 40.0)), 0.0)


def test_agreement_and_bsqi_by_hand():
    agree = quality.agreement([100, 400, 700], [130, 700, 1000], 54)
    assert agree.tolist() == [True, False, True]
    assert quality.bsqi(3, 3, 2) == 0.5              # 2 / (3 + 3 - 2)
    assert quality.bsqi(4, 4, 4) == 1.0 and quality.bsqi(0, 0, 0) == 1.0
    assert quality.agreement([5], [], 54).tolist() == [False]


def test_template_match_takes_the_best_earlier_beat():
    w = np.sin(np.linspace(0, 3, 50)) ** 3
    noise = np.random.default_rng(1).standard_normal(50)
    assert quality.template_match([noise, -w, 2 * w + 1], w) == pytest.approx(1.0)
    assert quality.template_match([-w], w) == pytest.approx(-1.0)
    assert quality.template_match([], w) == 0.0
    assert quality.correlation([np.ones(50)], w)[0] == 0.0   # a flat window correlates with nothing


def test_quality_is_below_half_exactly_when_the_rule_says_unreadable():
    rng = np.random.default_rng(2)
    clean = {"agree": True, "bsqi": 1.0, "tsqi": 0.98, "ksqi": 12.0, "psqi": 0.7}
    th = quality.Thresholds()
    assert quality.readable(clean, th) and quality.quality(clean, th) >= 0.5
    pvc = dict(clean, tsqi=0.2)                                   # odd shape, but both detectors agree
    assert quality.readable(pvc, th)
    assert not quality.readable(dict(pvc, agree=False), th)      # ... and not where they disagree
    assert not quality.readable(dict(clean, ksqi=th.kurtosis - 0.1), th)   # a Gaussian-like window
    for _ in range(20000):
        ind = {"agree": bool(rng.random() < 0.5), "bsqi": rng.choice([rng.random(), 1.0, th.agreement]),
               "tsqi": rng.choice([rng.uniform(-1, 1), th.template]), "ksqi": rng.choice([rng.uniform(1, 20), 3.5]),
               "psqi": rng.choice([rng.random(), th.power_ratio])}
        t = quality.Thresholds(*[rng.choice(v) for v in ([0, 0.75, 1.0], [0, 0.95, 1.0], [0, 3.5], [0, 0.2])])
        q = quality.quality(ind, t)
        assert 0.0 <= q <= 1.0 and (q >= 0.5) == quality.readable(ind, t), (ind, t.as_dict(), q)


# -- the second detector -------------------------------------------------------------------------
def synthetic_ecg(seconds=60, fs=360.0, seed=3):
    """Narrow QRS-like pulses at irregular, known times, with T waves and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    beats = np.cumsum(rng.uniform(0.6, 1.1, 2 * int(seconds)))
    beats = beats[beats < seconds - 0.5]
    x = 0.02 * rng.standard_normal(len(t))
    for b in beats:
        x += np.exp(-0.5 * ((t - b) / 0.012) ** 2) + 0.25 * np.exp(-0.5 * ((t - b - 0.3) / 0.05) ** 2)
    return x, np.round(beats * fs).astype(np.int64)


def test_second_detector_finds_each_beat_and_chunks_change_nothing():
    x, truth = synthetic_ecg()
    got = qrs_second.detect(x, 360.0)
    assert len(got) == len(truth) and np.abs(got - truth).max() <= 0.15 * 360
    d, parts, i = qrs_second.LengthDetector(360.0), [], 0
    for k in [1, 7, 90, 360, 2000, 33] * 40:
        parts += d.push(x[i:i + k])
        i += k
    parts += d.push(x[i:], final=True)
    assert parts == got.tolist()
    assert len(d.buf) < 2 * qrs_second.margin(360.0) + 2000   # bounded: margin + one chunk


# -- on real records -------------------------------------------------------------------------------
def lead(mitdb, rec, seconds=None):
    import wfdb

    n = None if seconds is None else int(seconds * 360)
    return (wfdb.rdrecord(str(mitdb / rec), channels=[0], sampto=n).p_signal[:, 0],
            wfdb.rdann(str(mitdb / rec), "atr", sampto=n))


def judged(x, fs, chunks=None, th=None):
    """[(input-rate peak, indices, readable)] of every beat the device detects, whole or in chunks."""
    engine = quality_gate.GatedEngine(streaming.BeatEngine(OP, fs, None), fs, th or quality.Thresholds())
    steps, i, k = ([(x, True)] if chunks is None else []), 0, 0
    while chunks is not None and i < len(x):
        steps.append((x[i:i + chunks[k % len(chunks)]], False))
        i, k = i + chunks[k % len(chunks)], k + 1
    if chunks is not None:
        steps.append((x[:0], True))
    out, sizes = [], []
    for c, last in steps:
        out += engine.push(c, final=last)
        sizes.append(len(engine.tracker.y))
    return [(b[2], b[5], b[6]) for b in out], max(sizes)


def matched(beats, ann, fs):
    m = scoring.Matcher(ann.sample, ann.symbol, fs)
    return np.asarray([m.match(b[0]) is not None for b in beats])


@pytest.mark.parametrize("rec", ["100", "119", "208"])
def test_clean_records_stay_readable(mitdb, rec):
    """208: many PVCs and fusion beats, shaped unlike the normal beats: both detectors find them."""
    x, ann = lead(mitdb, rec)
    beats, _ = judged(x, 360.0)
    tp = matched(beats, ann, 360.0)
    ok = np.asarray([b[2] for b in beats])
    assert tp.sum() > 1500 and (ok & tp).sum() > 0.995 * tp.sum()


def test_stream_gives_the_batch_quality(mitdb):
    x, ann = lead(mitdb, "119", 420)
    y, _ = nst_noise.stress(x, 360.0, ann.sample, ann.symbol, "em", 6, seed=5, learn_s=60, segment_s=60)
    whole, _ = judged(y, 360.0)
    chunked, biggest = judged(y, 360.0, chunks=[1, 7, 90, 360, 2000, 33])
    assert len(whole) > 400 and not all(b[2] for b in whole)     # noisy enough for some U
    assert chunked == whole
    assert biggest < 25 * 360                                     # bounded: seconds of samples, not the record


def invented_marked(x, fs, ann):
    beats, _ = judged(x, fs)
    tp = matched(beats, ann, fs)
    ok = np.asarray([b[2] for b in beats])
    return int((~tp).sum()), float((~ok & ~tp).sum()) / max((~tp).sum(), 1), float((~ok & tp).sum()) / tp.sum()


def test_invented_beats_in_noise_are_marked_unreadable(mitdb):
    """The issue's case: record 119 at 250 Hz with Gaussian noise of 0.5 mV (10 minutes), and the
    NST's way: electrode-motion noise at 6 dB in 2-minute segments. Most invented beats are U."""
    x, ann = lead(mitdb, "119", 600)
    y = resample_poly(x, 25, 36) + 0.5 * np.random.default_rng(0).standard_normal(int(np.ceil(len(x) * 25 / 36.)))
    ann.sample = np.round(ann.sample * 250 / 360.0).astype(np.int64)
    invented, share, _ = invented_marked(y, 250.0, ann)
    assert invented > 30 and share > 0.5, (invented, share)
    x, ann = lead(mitdb, "119", 600)
    y, _ = nst_noise.stress(x, 360.0, ann.sample, ann.symbol, "em", 6, seed=7, learn_s=60, segment_s=120)
    invented, share, true_u = invented_marked(y, 360.0, ann)
    assert invented > 30 and share > 0.5 and true_u < 0.5, (invented, share, true_u)


# -- end to end ------------------------------------------------------------------------------------
def ort(*args):
    return ["--backend", "onnxruntime", "--onnx", SHIPPED / "ecg_model_float.onnx", "--operator",
            SHIPPED / "cwt_operator.npz", *args]


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def noisy_record(mitdb, tmp_path_factory):
    """Record 119's first 7 minutes with electrode-motion noise at 6 dB in minutes 1-2, 3-4 and 5-6,
    as a WFDB record with its .atr."""
    import wfdb

    d = tmp_path_factory.mktemp("noisy")
    x, ann = lead(mitdb, "119", 420)
    y, _ = nst_noise.stress(x, 360.0, ann.sample, ann.symbol, "em", 6, seed=11, learn_s=60, segment_s=60)
    wfdb.wrsamp("n119", fs=360, units=["mV"], sig_name=["MLII"], p_signal=y[:, None], fmt=["16"],
                adc_gain=[200.0], baseline=[0], write_dir=str(d))
    wfdb.wrann("n119", "atr", ann.sample, symbol=ann.symbol, write_dir=str(d))
    return d / "n119"


def test_quality_column_and_u_labels_end_to_end(noisy_record, tmp_path):
    on, off = tmp_path / "on.csv", tmp_path / "off.csv"
    run = infer(*ort("--record", noisy_record, "--score", "--quality", "--out", on))
    assert run.returncode == 0, run.stderr
    assert infer(*ort("--record", noisy_record, "--score", "--out", off)).returncode == 0
    got, base = rows(on), rows(off)
    assert list(got[0]) == ["sample", "time_s", "predicted", "confidence", "quality", "reference", "annotation"]
    assert "quality" not in base[0]
    u = [r for r in got if r["predicted"] == "U"]
    assert 0 < len(u) < len(got)
    assert all(r["confidence"] == "" and float(r["quality"]) < 0.5 for r in u)
    assert all(float(r["quality"]) >= 0.5 for r in got if r["predicted"] != "U")
    # the same beats; a readable beat keeps the label and confidence it gets without the gate
    assert [r["sample"] for r in got] == [r["sample"] for r in base]
    assert all((a["predicted"], a["confidence"]) == (b["predicted"], b["confidence"])
               for a, b in zip(got, base) if a["predicted"] != "U")
    s_on = json.load(open(str(tmp_path / "on.score.json")))
    s_off = json.load(open(str(tmp_path / "off.score.json")))
    q = s_on["run"]["quality"]
    ref_u = sum(1 for r in u if r["annotation"])
    assert q["beats_unreadable"] == len(u) and q["beats_labelled"] == len(got)
    assert q["share_unreadable"] == pytest.approx(len(u) / len(got))
    assert q["reference_beats_unreadable"] == ref_u > 0
    assert s_on["detection"] == s_off["detection"]                       # detection: every detection
    cls_on, cls_off = s_on["classification"], s_off["classification"]
    assert cls_on["matched_beats"] + cls_on["matched_other_symbols"] + ref_u == \
        cls_off["matched_beats"] + cls_off["matched_other_symbols"]      # classes: readable matched beats
    assert "unreadable" in run.stdout and "left out of the classification scores" in run.stdout


def test_a_report_shows_the_unreadable_beats(noisy_record, tmp_path):
    """--quality with --report and --plot: U beats in the strips and counted on the page, the
    gallery's beats and labels those of the CSV (the log stays in step with the gate)."""
    pytest.importorskip("matplotlib")
    from test_report import assert_self_contained, page_of

    out, rep = tmp_path / "q.csv", tmp_path / "rep"
    run = infer(*ort("--record", noisy_record, "--score", "--quality", "--holter", "--plot", "--report", rep,
                     "--low-confidence", "0.9", "--out", out))
    assert run.returncode == 0, run.stderr
    got = rows(out)
    numbers = page_of(rep).numbers
    assert int(numbers["run.quality.beats_unreadable"]) == sum(r["predicted"] == "U" for r in got) > 0
    counts = {k.split(".")[1]: int(v) for k, v in numbers.items() if k.startswith("class_counts.")}
    assert sum(counts.values()) == sum(r["predicted"] != "U" for r in got)
    assert_self_contained(rep) and sorted((tmp_path / "q_strips").glob("*.png"))
    by_sample = {int(r["sample"]): r for r in got}
    html = (rep / "index.html").read_text()
    shown = sorted(p.stem.split("_")[1] for p in (rep / "beats").glob("*.png"))
    assert shown
    for s in shown:
        r = by_sample[int(s)]
        assert r["predicted"] != "U" and "(sample {}): predicted".format(int(s)) in html


def test_stream_equals_batch_with_quality(noisy_record, tmp_path):
    batch, stream = tmp_path / "batch.csv", tmp_path / "stream.csv"
    assert infer(*ort("--record", noisy_record, "--normalise", "running", "--quality", "--out", batch)).returncode == 0
    run = infer(*ort("--record", noisy_record, "--stream", "--chunk-s", "0.1", "--quality", "--out", stream))
    assert run.returncode == 0, run.stderr
    assert stream.read_text() == batch.read_text() and ",U," in batch.read_text()


def test_a_gate_that_passes_everything_changes_nothing_but_the_column(noisy_record, tmp_path):
    """Thresholds 0 switch every test off: the CSV is the gate-off CSV byte for byte plus the column,
    so the gate leaves the engine's beats, labels and confidences alone."""
    on, off = tmp_path / "on.csv", tmp_path / "off.csv"
    assert infer(*ort("--record", noisy_record, "--quality", "--quality-template", "0", "--quality-kurtosis", "0",
                      "--quality-power", "0", "--out", on)).returncode == 0
    assert infer(*ort("--record", noisy_record, "--out", off)).returncode == 0
    lines = on.read_text().splitlines()
    assert all(line.split(",")[2] != "U" for line in lines[1:])
    dropped = [",".join(f[:4] + f[5:]) for f in (line.split(",") for line in lines)]
    assert "\n".join(dropped) + "\n" == off.read_text()


def test_a_folder_of_records_sums_the_unreadable_beats(noisy_record, tmp_path):
    run = infer(*ort("--records", noisy_record.parent, "--quality", "--out-dir", tmp_path / "s"))
    assert run.returncode == 0, run.stderr
    s = json.load(open(str(tmp_path / "s" / "scores.json")))
    per = s["records"][0]["quality"]
    got = rows(tmp_path / "s" / "n119.csv")
    assert per["beats_unreadable"] == sum(r["predicted"] == "U" for r in got) > 0
    assert s["gross"]["quality"]["beats_unreadable"] == per["beats_unreadable"]
    assert s["gross"]["quality"]["reference_beats_unreadable"] == per["reference_beats_unreadable"]
    assert "unreadable" in run.stdout


def test_noise_alone_is_refused_with_quality(tmp_path):
    """60 s of Gaussian noise: without the gate every invented beat gets a class; with it, one
    error line, exit status 2 and no CSV."""
    p = tmp_path / "noise.csv"
    p.write_text("\n".join("{:.5f}".format(v) for v in np.random.default_rng(4).standard_normal(60 * 360)) + "\n")
    out = tmp_path / "out.csv"
    assert infer(*ort("--csv", p, "--fs", "360", "--out", out)).returncode == 0 and len(rows(out)) > 20
    out.unlink()
    for extra in ([], ["--stream"]):
        run = infer(*ort("--csv", p, "--fs", "360", "--quality", "--out", out, *extra))
        assert run.returncode == 2 and run.stderr.count("error: ") == 1 and "unreadable" in run.stderr, run.stderr
        assert not out.exists() and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("args, needle", [
    (["--quality-template", "0.5"], "add --quality"),
    (["--quality", "--quality-agreement", "1.5"], "from 0 to 1"),
    (["--quality", "--quality-kurtosis", "-1"], "0 or more"),
])
def test_bad_quality_flags_are_refused_before_any_work(tmp_path, args, needle):
    p = tmp_path / "x.csv"
    p.write_text("1\n2\n")
    run = infer(*ort("--csv", p, "--fs", "360", "--out", tmp_path / "o.csv", *args))
    assert run.returncode == 2 and needle in run.stderr, run.stderr
