"""jetson/ QRS detection, resampling, chunked processing, CSV gaps and EC57 matching on real
MIT-BIH records; no model needed (streaming.BeatEngine with classify=None detects only)."""
import numpy as np
import pytest
from scipy.signal import resample_poly

from jetson import common, scoring, signal_input, streaming

OP = {"fs": np.array(360), "before": np.array(90), "after": np.array(110), "align_halfwidth_s": np.array(0.05),
      "baseline_windows_s": np.array([0.2, 0.6])}


def lead(mitdb, rec, seconds=None):
    import wfdb

    sig = wfdb.rdrecord(str(mitdb / rec), channels=[0], sampto=None if seconds is None else int(seconds * 360))
    ann = wfdb.rdann(str(mitdb / rec), "atr", sampto=None if seconds is None else int(seconds * 360))
    return sig.p_signal[:, 0], ann


def detect(x, fs, chunks=None):
    """Aligned peaks (input sample numbers): whole signal, or fed in the given chunk sizes."""
    e = streaming.BeatEngine(OP, fs, None)
    if chunks is None:
        return [b[2] for b in e.push(x, final=True)]
    out, i, k = [], 0, 0
    while i < len(x):
        out += [b[2] for b in e.push(x[i:i + chunks[k % len(chunks)]])]
        i += chunks[k % len(chunks)]
        k += 1
    return out + [b[2] for b in e.push(np.zeros(0), final=True)]


def score(peaks, ann, fs):
    m = scoring.Matcher(ann.sample, ann.symbol, fs)
    for p in peaks:
        m.match(p)
    return m.detection()


@pytest.mark.parametrize("rec, se, ppv", [("100", 99.9, 99.9), ("208", 99.4, 99.6), ("228", 99.8, 99.0)])
def test_detection_on_real_records(mitdb, rec, se, ppv):
    """Whole records: 208 (many PVCs, fusion beats), 228 (PVCs 20x the normal beats' slope)."""
    x, ann = lead(mitdb, rec)
    d = score(detect(x, 360.0), ann, 360.0)
    assert d["se"] >= se and d["ppv"] >= ppv, d


def test_matcher_agrees_with_wfdb(mitdb):
    from wfdb import processing

    x, ann = lead(mitdb, "203", 600)   # noisy, multiform PVCs: misses and false detections
    peaks = np.asarray(detect(x, 360.0))
    m = scoring.Matcher(ann.sample, ann.symbol, 360.0)
    for p in peaks:
        m.match(p)
    wf = processing.compare_annotations(m.ref, peaks, 54)
    assert m.detection()["fn"] > 0 and m.tp == wf.tp and m.fp == wf.fp


def test_flutter_detections_are_not_false_positives(mitdb):
    """207's ventricular flutter episodes ('[' .. ']') hold no beats: EC57 leaves them out."""
    x, ann = lead(mitdb, "207", 120)
    d = score(detect(x, 360.0), ann, 360.0)
    assert d["fp_in_vf_excluded"] > 10 and d["fp"] <= 2 and d["se"] > 99


def test_stream_chunks_give_the_batch_peaks(mitdb):
    x, _ = lead(mitdb, "119", 400)
    whole = detect(x, 360.0)
    assert len(whole) > 400
    assert detect(x, 360.0, chunks=[1, 7, 90, 360, 2000, 33]) == whole


@pytest.mark.parametrize("fs", [128, 250, 500])
def test_detection_at_other_rates(mitdb, fs):
    """A record resampled to fs: peaks in fs's own sample numbers, Se / +P within 0.2 points."""
    x, ann = lead(mitdb, "208")
    ref = score(detect(x, 360.0), ann, 360.0)
    r = streaming.Resampler(360, fs)
    y = resample_poly(x, r.up, r.down)
    ann.sample = np.round(ann.sample * fs / 360.0).astype(np.int64)
    got = score(detect(y, float(fs)), ann, float(fs))
    assert abs(got["se"] - ref["se"]) <= 0.2 and abs(got["ppv"] - ref["ppv"]) <= 0.2, (ref, got)


@pytest.mark.parametrize("fs", [128.0, 250.0, 500.0, 257.0])
def test_resampler_chunks_equal_resample_poly(fs):
    x = np.random.default_rng(0).standard_normal(20000)
    r = streaming.Resampler(fs, 360)
    want = resample_poly(x, r.up, r.down)
    assert np.array_equal(streaming.Resampler(fs, 360).push(x, final=True), want)
    s, parts, i = streaming.Resampler(fs, 360), [], 0
    for k in [5, 1, 900, 64, 3000] * 10:
        parts.append(s.push(x[i:i + k]))
        i += k
    parts.append(s.push(x[i:], final=True))
    assert np.array_equal(np.concatenate(parts), want)


def test_gaps_are_filled_the_same_in_chunks():
    v = np.arange(40, dtype=float)
    v[[3, 10, 11, 12, 39]] = np.nan
    v[0] = np.nan
    whole = signal_input.GapFiller(360, "x").fill_all(v.copy())
    g = signal_input.GapFiller(360, "x")
    parts = [g.push(v[i:i + 4]) for i in range(0, 40, 4)] + [g.finish()]
    chunked = np.concatenate(parts)
    assert np.array_equal(whole, chunked)
    assert np.allclose(whole[1:39], np.arange(1, 39)) and whole[0] == 1 and whole[39] == 38  # linear, edges held


def test_long_gap_is_an_error():
    v = np.ones(200)
    v[50:50 + 37] = np.nan   # 37 samples at 360 Hz > 0.1 s
    with pytest.raises(common.DeviceError, match="37 missing or non-numeric values in a row"):
        signal_input.GapFiller(360, "x.csv").fill_all(v)


def test_feature_stream_equals_the_whole_signals_features(mitdb):
    """qrs.FeatureStream (a stream's new samples only, its buffer trimmed as the engine trims
    it) gives qrs.features of the whole lead, bit for bit, for any chunking, at both ends."""
    from jetson import qrs

    x, _ = lead(mitdb, "208", 20)
    bp, slope, mwi = qrs.features(x, 360.0)
    rng = np.random.default_rng(5)
    for sizes in ([1], [7, 90, 3], [90], [5000]):
        f, n, y0, got = qrs.FeatureStream(360.0), 0, 0, {"bp": {}, "slope": {}, "mwi": {}}
        k = 0
        while n < len(x):
            step = min(sizes[k % len(sizes)], len(x) - n)
            k += 1
            f.grow(step)
            n += step
            before = f.mwi_end
            f.update(x[y0:n], n, y0, n == len(x))
            for i in range(before, f.mwi_end):                      # what became final
                got["bp"][i], got["mwi"][i] = f.bp[i - y0], f.mwi[i - y0]
                got["slope"][i] = f.slope(i - y0, i - y0 + 1)[0]
            drop = int(rng.integers(0, 60))                         # trim as the engine does: behind what it needs
            keep_from = max(min(f.mwi_end, f.slope_end, f.bp_end) - 200, y0)
            if drop and keep_from > y0:
                f.drop(keep_from - y0)
                y0 = keep_from
        assert (f.bp_end, f.slope_end, f.mwi_end) == (len(x),) * 3
        for name, want in (("bp", bp), ("slope", slope), ("mwi", mwi)):
            idx = np.array(sorted(got[name]))
            assert np.array_equal(np.array([got[name][i] for i in idx]), want[idx]), (sizes, name)
        assert len(got["mwi"]) == len(x)


@pytest.mark.parametrize("seed", range(4))
def test_a_chunks_candidates_are_those_of_the_maximum_filter(seed):
    """qrs.candidates on a short stretch (a stream's chunk: local maxima tested one by one) finds
    the peaks the maximum filter finds on a long one: plateaus, zeros, both ends."""
    from jetson import qrs

    rng = np.random.default_rng(seed)
    mwi = np.repeat(np.round(rng.random(300) ** 3, 2), rng.integers(1, 4, 300))[:600]   # plateaus and ties
    mwi[:5], mwi[200:230] = 0.0, 0.0
    bp, slope = rng.standard_normal(len(mwi)), rng.random(len(mwi))
    whole = qrs.candidates(bp, slope, mwi, 100.0)                 # r = 20: the filter over everything
    pieces = [qrs.candidates(bp, slope, mwi, 100.0, lo, min(lo + 37, len(mwi))) for lo in range(0, len(mwi), 37)]
    for k in range(4):
        assert np.array_equal(np.concatenate([p[k] for p in pieces]), whole[k])
    assert len(whole[0]) > 5
