"""The Holter summary (jetson/holter.py, --holter) against the definitions in docs/design.md,
computed here apart (numpy, regular expressions): hand-made sequences, MIT-BIH reference
annotations (119 bigeminy, 208 couplets and runs, 232 pauses), unreadable beats, a day of beats;
the long-recording report log (jetson/long_log.py) against plain slicing of its signal, the same
report as report.BeatLog for a short record; --holter end to end with the shipped model."""
import csv
import json
import re
import tracemalloc

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from jetson import holter_report, long_log, report, scoring
from jetson.holter import Holter
from helpers import record_excerpt
from test_jetson import REPO, infer
from test_report import Page, assert_numbers_equal, assert_self_contained

AAMI = ["F", "N", "S", "V"]
FS = 360.0


# -- the definitions, computed apart ----------------------------------------------------------------
def reference(samples, classes, duration, fs=FS, s_class="S", v_class="V"):
    """The Holter figures of beats (sample numbers, class names; "U" unreadable, None not
    classified) by the definitions, vectorised."""
    t = np.asarray(samples, dtype=np.float64) / fs
    readable = np.array([c != "U" for c in classes])
    rr = np.diff(t)
    both = readable[1:] & readable[:-1]
    gap = both & (rr > 10.0)
    ok = both & ~gap
    hr_ok = sliding_window_view(ok, 8).all(axis=1)             # RR j..j+7: beats j..j+8
    hr = (60.0 * 8 / (t[8:] - t[:-8]))[hr_ok]
    ends = t[8:][hr_ok]
    letter = {s_class: "S", v_class: "V", "U": "x", None: "x"}
    text = "".join(("|" if i and gap[i - 1] else "") + letter.get(c, "N") for i, c in enumerate(classes))
    seq = {}
    for k in "SV":
        runs = [len(m.group()) for m in re.finditer(k + "+", text)]
        big = [len(m.group()) // 2 for m in re.finditer("(?:N{})".format(k) + "{3,}", text)]
        seq[k] = {"isolated": runs.count(1), "couplets": runs.count(2), "runs": sum(n >= 3 for n in runs),
                  "beats_in_runs": sum(n for n in runs if n >= 3), "longest_run_beats": max([0] + runs) if max(
                      [0] + runs) >= 3 else 0, "bigeminy_episodes": len(big), "beats_in_bigeminy": sum(big),
                  "longest_bigeminy_pairs": max([0] + big)}
    edges = np.concatenate([[0.0], (t[1:] + t[:-1]) / 2, [duration]])
    pauses = ok & (rr > 2.0)
    return {"mean": 60.0 * ok.sum() / rr[ok].sum(), "min": hr.min(), "min_at": ends[hr.argmin()], "max": hr.max(),
            "max_at": ends[hr.argmax()], "rr_n": int(ok.sum()), "pauses": sorted(rr[pauses], reverse=True),
            "pause_at": dict(zip(t[:-1][pauses], rr[pauses])), "gaps": sorted(rr[gap], reverse=True),
            "seq": seq, "unreadable_s": np.diff(edges)[~readable].sum()}


def summarise(samples, classes, duration, model_classes=AAMI, fs=FS):
    h = Holter(fs, model_classes)
    for s, c in zip(samples, classes):
        h.add(s, c)
    return h.summary(duration)


def assert_matches(got, ref, classes, s_class="S", v_class="V"):
    hr = got["heart_rate"]
    assert hr["rr_intervals"] == ref["rr_n"]
    assert hr["mean_bpm"] == pytest.approx(ref["mean"], rel=1e-12)
    assert (hr["min_bpm"], hr["max_bpm"]) == pytest.approx((ref["min"], ref["max"]), rel=1e-12)
    assert (hr["min_at_s"], hr["max_at_s"]) == pytest.approx((ref["min_at"], ref["max_at"]))
    assert [p["rr_s"] for p in got["pauses"]["longest"]] == pytest.approx(ref["pauses"][:10])
    assert got["pauses"]["count"] == len(ref["pauses"]) and got["gaps"]["count"] == len(ref["gaps"])
    assert all(ref["pause_at"][p["at_s"]] == pytest.approx(p["rr_s"]) for p in got["pauses"]["longest"])
    for k, name in (("S", s_class), ("V", v_class)):
        if name is None:
            assert got["ectopy"][k] is None and got["burden_pct"][k] is None
            continue
        assert {f: got["ectopy"][k][f] for f in ref["seq"][k]} == ref["seq"][k], k
        n = sum(c == name for c in classes)
        assert got["beats"]["per_class"][name] == n
        assert got["burden_pct"][k] == pytest.approx(100.0 * n / sum(c not in ("U", None) for c in classes))
    assert got["unreadable"]["seconds"] == pytest.approx(ref["unreadable_s"], abs=1e-9)
    assert got["beats"]["total"] == len(classes) and got["beats"]["unreadable"] == classes.count("U")


# -- unit tier ----------------------------------------------------------------------------------------
def test_a_hand_made_sequence():
    # 0.8 s apart: N N [V V] N N [V V V] N N N (V N V N V N) ... S S couplet, U, V V, then a 5 s pause, a 15 s gap
    seq = "NNVVNNVVVNNNVNVNVNNSSNUVVNN"
    samples = [80 * (i + 1) for i in range(len(seq))]
    samples += [samples[-1] + 500, samples[-1] + 2000]
    classes = list(seq) + ["N", "N"]
    s = summarise(samples, classes, 60.0, fs=100.0)
    v, sv = s["ectopy"]["V"], s["ectopy"]["S"]
    assert (v["isolated"], v["couplets"], v["runs"], v["longest_run_beats"]) == (3, 2, 1, 3)
    assert v["longest_run_at_s"] == pytest.approx(5.6)            # the 7th beat
    assert (v["bigeminy_episodes"], v["longest_bigeminy_pairs"]) == (1, 3)
    assert v["longest_bigeminy_at_s"] == pytest.approx(9.6)     # the 12th beat
    assert (sv["couplets"], sv["isolated"], sv["runs"]) == (1, 0, 0)
    assert s["beats"]["per_class"] == {"F": 0, "N": 16, "S": 2, "V": 10, "U": 1}
    assert s["burden_pct"]["V"] == pytest.approx(100 * 10 / 28)
    # RR: 26 within the sequence, 2 touch the U beat; + the pause; the gap is apart
    assert s["heart_rate"]["rr_intervals"] == 25
    assert s["heart_rate"]["mean_bpm"] == pytest.approx(60 * 25 / (24 * 0.8 + 5.0))
    assert s["heart_rate"]["min_bpm"] == pytest.approx(75) and s["heart_rate"]["max_bpm"] == pytest.approx(75)
    assert s["pauses"] == {"count": 1, "longest": [{"rr_s": pytest.approx(5.0), "at_s": pytest.approx(21.6)}]}
    assert s["gaps"]["count"] == 1 and s["gaps"]["total_s"] == pytest.approx(15.0)
    assert s["unreadable"]["seconds"] == pytest.approx(0.8)        # halfway to each neighbour
    assert_matches(s, reference(samples, classes, 60.0, fs=100.0), classes)
    assert len(s["trend_5min"]) == 1 and len(s["trend_hourly"]) == 1
    with pytest.raises(ValueError, match="time order"):
        h = Holter(100.0, AAMI)
        h.add(10, "N")
        h.add(5, "N")
    with pytest.raises(ValueError, match="unknown class"):
        Holter(100.0, AAMI).add(10, "X")


def test_the_thesis_model_has_V_but_no_S():
    seq = ["0", "3", "3", "0", "1", "3", "3", "3", "2"]
    s = summarise([300 * (i + 1) for i in range(len(seq))], seq, 5.0, model_classes=["0", "1", "2", "3"])
    assert s["ectopic_classes"] == {"S": None, "V": "3"}
    assert s["ectopy"]["S"] is None and s["burden_pct"]["S"] is None and s["trend_hourly"][0]["S"] is None
    assert (s["ectopy"]["V"]["couplets"], s["ectopy"]["V"]["runs"]) == (1, 1)
    parts, _ = holter_report.holter_section(s, "t", "t.holter.json")
    numbers = Page("".join(parts)).numbers
    assert numbers["holter.burden_pct.V"] == "{:.2f}".format(500 / 9)
    assert "holter.burden_pct.S" not in numbers and "holter.trend_hourly.0.S" in numbers


def day_of_beats(rng, hours=24.0):
    """~100k beats: RR 0.7-1.0 s, 5 % V in couplets and runs, 2 % S, a few pauses, an unreadable
    stretch every 3 hours."""
    rr = rng.uniform(0.7, 1.0, int(hours * 3600 / 0.85))
    rr[rng.choice(len(rr), 20, replace=False)] = rng.uniform(2.1, 4.0, 20)
    t = np.cumsum(rr)
    t = t[t < hours * 3600 - 1]
    cls = rng.choice(["N", "S", "V", "F"], size=len(t), p=[0.92, 0.02, 0.05, 0.01]).astype(object)
    for start in rng.choice(len(t) - 5, 200, replace=False):      # couplets and runs
        cls[start:start + rng.integers(2, 5)] = "V"
    for h in range(0, int(hours), 3):
        cls[(t > h * 3600 + 600) & (t < h * 3600 + 660)] = "U"
    return np.round(t * FS).astype(np.int64), list(cls)


def test_a_day_of_beats_gives_24_hourly_rows_in_bounded_memory():
    samples, classes = day_of_beats(np.random.default_rng(23))
    assert len(samples) > 95000
    h = Holter(FS, AAMI)
    beats = list(zip(samples.tolist(), classes))
    tracemalloc.start()
    for s, c in beats:
        h.add(s, c)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e3, peak          # a list of the beats' times alone would be ~3.5 MB
    s = h.summary(24 * 3600.0)
    assert len(s["trend_hourly"]) == 24 and len(s["trend_5min"]) == 288
    assert_matches(s, reference(samples, classes, 24 * 3600.0), classes)
    t = samples / FS
    hour = (t // 3600).astype(int)
    cls = np.asarray(classes, dtype=object)
    for k, row in enumerate(s["trend_hourly"]):
        assert (row["start_s"], row["end_s"]) == (k * 3600.0, (k + 1) * 3600.0)
        assert row["beats"] == np.sum(hour == k)
        assert (row["S"], row["V"]) == (np.sum((hour == k) & (cls == "S")), np.sum((hour == k) & (cls == "V")))
    assert s["trend_hourly"][3]["unreadable_pct"] == pytest.approx(100 * 60 / 3600.0, abs=0.05)
    assert s["trend_hourly"][1]["unreadable_pct"] == 0
    assert s["unreadable"]["pct"] == pytest.approx(100 * s["unreadable"]["seconds"] / 86400)
    # the page: 24 rows in the hourly table, every number equal to the JSON
    parts, files = holter_report.holter_section(s, "day", "day.holter.json")
    page = Page("".join(parts))
    hourly = {k.split(".")[2] for k in page.numbers if k.startswith("holter.trend_hourly.")}
    assert hourly == {str(i) for i in range(24)}
    assert not any(k.startswith("holter.trend_5min.") for k in page.numbers)    # shown only up to an hour
    assert_numbers_equal(page.numbers, {"holter": s}) and files["holter_trend.png"][:4] == b"\x89PNG"
    json.dumps(s, allow_nan=False)


def test_holter_needs_one_recording():
    for what in (["--images", "x"], ["--records", "x"]):
        run = infer("--backend", "onnxruntime", "--onnx", "missing.onnx", *what, "--holter")
        assert run.returncode == 2 and run.stderr.splitlines() == [
            "error: --holter summarises one recording: give --record, --csv or --edf"]


# -- the long-recording log -------------------------------------------------------------------------
def synthetic(fs, seconds, rng):
    x = rng.normal(0, 0.02, int(seconds * fs))
    peaks = np.arange(int(0.5 * fs), len(x) - int(0.5 * fs), int(0.8 * fs))
    x[peaks] += 1.0
    return x, peaks


def feed(log, x, peaks, fs, stream, rng):
    """Beats as the labeller gives them: class 0-3, random confidence, a reference for some; in a
    stream each beat once 1.5 s of signal after it has come."""
    classify = log.wrap(lambda u8, rr: None)
    chunk = int(0.25 * fs)
    pred = rng.integers(0, 4, len(peaks))
    conf = rng.uniform(0.3, 1.0, len(peaks))
    true = [int(rng.integers(0, 4)) if i % 3 == 0 else None for i in range(len(peaks))]
    done = 0

    def beats(upto):
        nonlocal done
        k = int(np.searchsorted(peaks, upto))
        if k > done:
            classify(np.full((k - done, 100, 100), 7, np.uint8), None)
            for i in range(done, k):
                log.beat(peaks[i], pred[i], conf[i], "N" if true[i] is not None else "", true[i])
            done = k
    if stream:
        for a in range(0, len(x), chunk):
            log.signal(x[a:a + chunk])
            beats(a + chunk - int(1.5 * fs))
        beats(len(x))
        log.finish(None)
    else:
        beats(len(x))
        log.finish(x)


@pytest.mark.parametrize("stream", [False, True], ids=["batch", "stream"])
def test_a_long_recording_keeps_its_head_an_envelope_and_the_gallery_waveforms(stream, tmp_path):
    fs, seconds = 100.0, 2.2 * 3600
    rng = np.random.default_rng(5)
    x, peaks = synthetic(fs, seconds, rng)
    x = x[:-3]                                    # a last envelope bin of 1 sample
    log = long_log.LongBeatLog(fs, per_pair=3, low_confidence=0.5, head_s=120)
    feed(log, x, peaks, fs, stream, rng)
    assert log.long and np.array_equal(log.head, x[:12000]) and len(log.x) == len(x)
    b = log.envelope.bin
    edges = np.arange(0, len(x), b)
    assert np.array_equal(log.envelope.lo.values(), np.minimum.reduceat(x, edges).astype(np.float32))
    assert np.array_equal(log.envelope.hi.values(), np.maximum.reduceat(x, edges).astype(np.float32))
    # nothing of the signal's length is kept besides the envelope
    kept = [v for v in vars(log).values() if isinstance(v, np.ndarray)] + [a for _, a in log.x.snippets]
    assert max(len(a) for a in kept) < len(x) / 10
    assert sum(len(a) for a in log.chunks) == 0 and len(log.recent) == 0
    # every gallery beat: its waveform is the signal's own
    shown = sorted(-item[1] for heap in list(log.errors.values()) + [log.low] for item in heap)
    assert len(shown) > 20 and any(log.sample[i] > 3600 * fs for i in shown)
    for i in shown:
        s = int(log.sample[i])
        assert np.array_equal(log.x[s - 25:s + 31], x[s - 25:s + 31]), s
    x_strips, beats = long_log.strip_input(log)
    assert len(x_strips) == 12000 and max(beats["sample"]) < 12000 and len(beats["sample"]) == np.sum(peaks < 12000)
    assert log.class_counts(4) == np.bincount(np.asarray(log.pred.values(), int), minlength=4).tolist()
    if stream:     # the report: the strip pages of the head, one overview page per hour, all files used
        letters = ["F", "N", "S", "V"]
        strips = report.strip_pages(x_strips, fs, beats, letters, "t")
        run = {"beats": len(peaks), "seconds_of_ecg": seconds, "processing_s": 1.0, "realtime_factor": 1.0}
        files = report.device_report(log, fs, letters, letters, {"run": run}, "t", (0.25, 0.31), [], strips,
                                     holter_report.sections(log, fs, letters, None, "t"))
        assert len(strips) == 2 and {f for f in files if f.startswith("overview_")} == {
            "overview_h01.png", "overview_h02.png", "overview_h03.png"}
        report.replace_folder(tmp_path / "rep", files)
        assert_self_contained(tmp_path / "rep")


@pytest.mark.parametrize("stream", [False, True], ids=["batch", "stream"])
def test_a_short_record_gets_the_same_report_from_both_logs(stream):
    fs = 360.0
    rng = np.random.default_rng(1)
    x, peaks = synthetic(fs, 100.0, rng)
    logs = [report.BeatLog(3, 0.5), long_log.LongBeatLog(fs, 3, 0.5)]
    for log in logs:
        feed(log, x, peaks, fs, stream, np.random.default_rng(2))
    assert not logs[1].long
    letters = ["F", "N", "S", "V"]
    run = {"beats": len(peaks), "seconds_of_ecg": 100.0, "processing_s": 1.0, "realtime_factor": 1.0}
    out = []
    for log in logs:
        x_strips, beats = long_log.strip_input(log)
        strips = report.strip_pages(x_strips, fs, beats, letters, "t")
        out.append(report.device_report(log, fs, letters, letters, {"run": run}, "t", (0.25, 0.31), [], strips,
                                        holter_report.sections(log, fs, letters, None, "t")))
    assert out[0] == out[1] and any(f.startswith("beats/") for f in out[0])


# -- data tier: reference annotations, and the device end to end ------------------------------------
def annotated_raw(mitdb, rec):
    import wfdb

    ann = wfdb.rdann(str(mitdb / rec), "atr")
    return ann.sample, ann.symbol


def annotated(mitdb, rec):
    import wfdb

    samples, symbols = scoring.beat_peaks(*annotated_raw(mitdb, rec))
    n = wfdb.rdheader(str(mitdb / rec)).sig_len
    return samples, symbols, n / FS


@pytest.mark.parametrize("rec", ["119", "208", "232"])
def test_reference_annotations_of_mitdb(mitdb, rec):
    """Each beat's AAMI class from the .atr (Q beats, which the AAMI model does not take: not
    classified), some beats unreadable: the summary equals the definitions computed apart."""
    samples, symbols, duration = annotated(mitdb, rec)
    classes = [c if c in AAMI else None for c in map(scoring.aami, symbols)]
    t = samples / FS
    for i in np.flatnonzero(((t > 600) & (t < 630)) | (np.arange(len(t)) % 97 == 0)):
        classes[i] = "U"
    s = summarise(samples, classes, duration)
    ref = reference(samples, classes, duration)
    assert_matches(s, ref, classes)
    assert s["beats"]["not_classified"] == classes.count(None)
    figures = {"119": ("V", "bigeminy_episodes"), "208": ("V", "couplets"), "232": ("S", "runs")}
    kind, field = figures[rec]
    assert s["ectopy"][kind][field] > 5     # the record's known rhythm is there to count
    if rec == "232":
        assert s["pauses"]["count"] > 10    # its long pauses
    assert sum(r["beats"] for r in s["trend_5min"]) == len(samples) == s["beats"]["total"]


@pytest.fixture(scope="module")
def record_119(mitdb, tmp_path_factory):
    """About the first 4 minutes of MIT-BIH 119 (PVCs in bigeminy) as a WFDB record with its .atr,
    cut halfway between two beats: every beat has its full window (its first is at 0.86 s)."""
    beats = scoring.beat_peaks(*annotated_raw(mitdb, "119"))[0]
    k = int(np.searchsorted(beats, 240 * FS))
    return record_excerpt(mitdb, "119", int((beats[k - 1] + beats[k]) // 2), tmp_path_factory.mktemp("rec119"))


def test_holter_end_to_end(record_119, tmp_path):
    model = REPO / "models" / "aami"
    args = ["--backend", "onnxruntime", "--onnx", model / "ecg_model_float.onnx", "--operator",
            model / "cwt_operator.npz", "--record", record_119, "--beats", "annotations"]
    plain = infer(*args, "--out", tmp_path / "plain.csv")
    run = infer(*args, "--out", tmp_path / "b.csv", "--holter", "--report", tmp_path / "rep")
    assert plain.returncode == 0 and run.returncode == 0, run.stderr
    assert (tmp_path / "b.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()   # the CSV is unchanged
    summary = json.loads((tmp_path / "b.holter.json").read_text())
    rows = list(csv.DictReader(open(tmp_path / "b.csv")))
    import wfdb

    duration = wfdb.rdheader(str(record_119)).sig_len / FS
    assert summary["beats"]["not_classified"] == 0 and summary["beats"]["total"] == len(rows)
    assert summary["beats"]["per_class"] == {c: sum(r["predicted"] == c for r in rows) for c in AAMI + ["U"]}
    assert_matches(summary, reference([int(r["sample"]) for r in rows], [r["predicted"] for r in rows], duration),
                   [r["predicted"] for r in rows])
    assert summary["ectopy"]["V"]["bigeminy_episodes"] >= 1 and summary["duration_s"] == pytest.approx(duration)
    page = Page((tmp_path / "rep" / "index.html").read_text())
    holter_numbers = {k: v for k, v in page.numbers.items() if k.startswith("holter.")}
    assert {"holter.heart_rate.mean_bpm", "holter.ectopy.V.couplets", "holter.trend_hourly.0.V",
            "holter.trend_5min.0.hr_max_bpm", "holter.pauses.count"} <= set(holter_numbers)
    assert_numbers_equal(holter_numbers, {"holter": summary})
    assert "<h2>Holter summary</h2>" in (tmp_path / "rep" / "index.html").read_text()
    assert_self_contained(tmp_path / "rep")
