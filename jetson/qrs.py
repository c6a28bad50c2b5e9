"""QRS (R-peak) detection for the device: Python 3.6+, numpy and scipy only.

A Pan-Tompkins / Hamilton-Tompkins style detector, vectorised where it can be:

1. feature signals (`features`): the lead is band-passed by the Pan-Tompkins filters (two
   boxcars = low-pass, minus a long boxcar = high-pass; ~5-12 Hz), differentiated, squared and
   integrated over a 150 ms window (MWI). Every filter is a centred FIR, so each output sample
   depends only on the input within FEATURE_MARGIN_S of it: a stream can compute them exactly
   on a buffer (streaming.py).
2. candidates: the local maxima of the MWI within +-CANDIDATE_RADIUS_S (a maximum filter),
   each with its MWI height and the largest slope of the band-passed signal around it.
3. decision (`Decider`, its settings in `Settings`): a small state machine over the candidates in time order (a Python
   loop over a few candidates per beat): adaptive threshold between the median of the last
   eight QRS heights and the median of the last eight noise heights (heights are the square
   root of the MWI, so a PVC 20x a normal beat's squared slope does not hide the normal beats),
   a refractory period, a T-wave check (a candidate within 360 ms of the last QRS whose slope is
   under half of that QRS's is a T wave), and a search-back (no QRS for 1.4 mean RR: the
   highest candidate of the gap above half the threshold is taken).

`detect(x, fs)` runs the three on a whole signal; streaming.py runs the same code on chunks and
gets the same peaks. The positions returned are those of the band-passed signal's largest
|value| near each MWI peak; infer_trt.py then aligns them as stage 1 does.
"""
import numpy as np
from scipy.ndimage import maximum_filter1d

CANDIDATE_RADIUS_S = 0.2
MWI_S = 0.15
REFRACTORY_S = 0.2
T_WAVE_S = 0.36
SEARCHBACK_RR = 1.4         # chosen on DS1 among 1.3 / 1.4 / 1.5 / 1.66 (bench_detection.py)
THRESHOLD = 0.25            # chosen on DS1 among 0.2 / 0.25 / 0.3125 (Hamilton-Tompkins) / 0.375
INIT_S = 8.0                # seconds whose maxima seed the QRS heights
POSITION_S = 0.1            # the QRS is looked for within +-POSITION_S of the MWI peak
MAX_PENDING = 64            # candidates kept for a search-back (bounded memory without beats)




class Settings(object):
    """The decision's tunable settings (infer_trt.py --qrs-*); the defaults are the constants above,
    chosen on DS1 (bench/bench_detection.py; docs/design.md "Where to change what")."""

    def __init__(self, threshold=THRESHOLD, searchback_rr=SEARCHBACK_RR, refractory_s=REFRACTORY_S,
                 t_wave_s=T_WAVE_S):
        self.threshold, self.searchback_rr = float(threshold), float(searchback_rr)
        self.refractory_s, self.t_wave_s = float(refractory_s), float(t_wave_s)
        if not 0 < self.threshold < 1:
            raise ValueError("the QRS threshold must lie between 0 (the noise level) and 1 (the QRS level)")
        if self.searchback_rr <= 1 or self.refractory_s <= 0 or self.t_wave_s < self.refractory_s:
            raise ValueError("the search-back must exceed 1 mean RR, the refractory period be positive and "
                             "the T-wave window at least as long as it")


_KERNELS = {}


def _kernels(fs):
    """Centred FIR kernels of the feature signals at fs (Pan-Tompkins' filters, scaled from 200 Hz)."""
    if fs not in _KERNELS:
        _KERNELS[fs] = _make_kernels(fs)
    return _KERNELS[fs]


def _make_kernels(fs):
    k = fs / 200.0
    lp_n = max(int(round(6 * k)), 1)
    low = np.convolve(np.ones(lp_n), np.ones(lp_n))
    low /= low.sum()
    hp_n = max(int(round(32 * k)), 3) | 1
    high = -np.ones(hp_n) / hp_n
    high[hp_n // 2] += 1.0
    band = np.convolve(low, high)
    s = max(int(round(k)), 1)
    deriv = np.zeros(4 * s + 1)
    deriv[[0, s, 3 * s, 4 * s]] = [2.0, 1.0, -1.0, -2.0]
    deriv *= fs / (8.0 * s)
    mwi = np.ones(max(int(round(MWI_S * fs)), 1) | 1)
    return band, deriv, mwi / len(mwi)


def feature_margin(fs):
    """Samples of context each side that make the features of the centre exact."""
    band, deriv, mwi = _kernels(fs)
    return (len(band) + len(deriv) + len(mwi)) // 2 + int(round((CANDIDATE_RADIUS_S + POSITION_S) * fs)) + 2


def candidate_margin(fs):
    """Samples of features each side of a candidate that candidates() reads: the maximum filter's
    radius (and the sample before), the QRS position window."""
    return max(int(round(CANDIDATE_RADIUS_S * fs)), int(round(POSITION_S * fs))) + 1


def features(x, fs):
    """(band-passed, |slope|, MWI) of x: centred convolutions, zero outside x."""
    band, deriv, mwi = _kernels(fs)
    bp = np.convolve(x, band, mode="same")
    slope = np.convolve(bp, deriv, mode="same")
    return bp, np.abs(slope), np.convolve(slope * slope, mwi, mode="same")


def _extend_same(src, src_end, dst, done, kernel, offset, final):
    """dst[done:end] = np.convolve(whole src, kernel, "same")[done:end] for every output that src,
    known up to src_end, decides (all at the signal's end); arrays indexed from `offset`. Returns
    end. Each output is the same dot product numpy forms on the whole signal (the segment starts
    at the signal's start or far enough before `done`, and is never shorter than the kernel, for
    which numpy would swap the operands and sum in another order)."""
    h = len(kernel) // 2
    end = src_end if final else src_end - h
    if end <= done:
        return done
    a = max(min(done - h, src_end - len(kernel)), 0)
    seg = src[a - offset:src_end - offset]
    if len(seg) < len(kernel):   # a signal shorter than the kernel (a = 0)
        if not final:
            return done
        same = np.convolve(seg, kernel, mode="full")[h:h + len(seg)]
    else:
        same = np.convolve(seg, kernel, mode="same")
    dst[done - offset:end - offset] = same[done - a:end - a]
    return end


class FeatureStream(object):
    """features() of a lead that grows chunk by chunk, computed for the new samples only (a
    stream's 0.25 s chunks would otherwise refilter their context each time): the same numbers.
    Rows bp, slope (signed) and mwi of one array run parallel to the caller's buffer of the lead
    (`grow` and `drop` as it does); exact up to bp_end, slope_end, mwi_end."""

    def __init__(self, fs):
        self.kernels = _kernels(fs)
        assert all(len(k) % 2 for k in self.kernels)   # centred: "same" puts output i on input i
        self.rows = np.zeros((3, 0))
        self.bp_end = self.slope_end = self.mwi_end = 0

    @property
    def bp(self):
        return self.rows[0]

    @property
    def mwi(self):
        return self.rows[2]

    def grow(self, k):
        self.rows = np.concatenate([self.rows, np.zeros((3, k))], axis=1)

    def drop(self, k):
        self.rows = self.rows[:, k:]

    def slope(self, a, b):
        """|slope| of samples a .. b - 1 (buffer indices)."""
        return np.abs(self.rows[1, a:b])

    def update(self, y, n, offset, final):
        """Bring the features up to date with the lead y (samples offset .. n - 1)."""
        band, deriv, mwi = self.kernels
        bp, signed, out = self.rows
        self.bp_end = _extend_same(y, n, bp, self.bp_end, band, offset, final)
        self.slope_end = _extend_same(bp, self.bp_end, signed, self.slope_end, deriv, offset, final)
        # the MWI's input, slope squared, over what its new outputs read
        a = max(min(self.mwi_end - len(mwi) // 2, self.slope_end - len(mwi)), 0)
        sq = np.zeros(0) if self.slope_end <= a else signed[a - offset:self.slope_end - offset] ** 2
        self.mwi_end = _extend_same(sq, self.slope_end - a, out[a - offset:], self.mwi_end - a, mwi, 0, final) + a


def candidates(bp, slope, mwi, fs, lo=0, hi=None):
    """Candidates whose MWI peak lies in [lo, hi): (peak index, height, max slope, QRS position).

    A candidate is the first sample of a local maximum of the MWI over +-CANDIDATE_RADIUS_S;
    its slope is the largest |slope| and its position the largest |bp| within +-POSITION_S.
    """
    hi = len(mwi) if hi is None else hi
    r = int(round(CANDIDATE_RADIUS_S * fs))
    if hi - lo > 4 * r:   # a long stretch: one maximum filter over it all
        top = maximum_filter1d(mwi, 2 * r + 1, mode="constant", cval=0.0)
        prev = np.concatenate([[np.inf], mwi[:-1]])
        idx = np.flatnonzero((mwi == top) & (mwi > prev) & (mwi > 0))
        idx = idx[(idx >= lo) & (idx < hi)]
    else:                 # a stream's chunk: its few local maxima, each against its own +-r
        idx = _short_maxima(mwi, lo, hi, r)
    w = int(round(POSITION_S * fs))
    if len(idx) == 0:
        empty = np.zeros(0, np.int64)
        return empty, np.zeros(0), np.zeros(0), empty
    grid = np.clip(idx[:, None] + np.arange(-w, w + 1)[None, :], 0, len(mwi) - 1)
    slopes = slope[grid].max(axis=1)
    pos = grid[np.arange(len(idx)), np.abs(bp[grid]).argmax(axis=1)]
    return idx, np.sqrt(mwi[idx]), slopes, pos


def _short_maxima(mwi, lo, hi, r):
    """The candidates' MWI peaks in [lo, hi) as the maximum filter finds them (equal to the
    largest value within +-r, the filter's zero padding below every MWI value; above the sample
    before, none at 0; above 0), tested one by one among the local maxima: a few per chunk, where
    the filter's per-call cost would dominate a stream's 0.25 s."""
    a = max(lo, 1)
    if hi <= a:
        return np.zeros(0, np.int64)
    m = mwi[a:hi]
    ok = (m > mwi[a - 1:hi - 1]) & (m > 0)
    nxt = mwi[a + 1:hi + 1]   # the last sample of mwi has no successor
    ok[:len(nxt)] &= m[:len(nxt)] >= nxt
    return np.asarray([i for i in (np.flatnonzero(ok) + a).tolist() if mwi[i] >= mwi[max(i - r, 0):i + r + 1].max()],
                      dtype=np.int64)


def _median(values):
    """np.median of a short list (the same number), without numpy's per-call cost."""
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


class Decider(object):
    """The threshold / T-wave / search-back logic over candidates given in time order.

    `feed(...)` takes the next candidates (as arrays) and returns the QRS positions that are
    final; a search-back can only add a QRS after the last one returned, so the output is in
    time order and never revised. `finish()` ends the signal.
    """

    def __init__(self, fs, seed_heights, settings=None):
        self.fs = float(fs)
        self.settings = settings = settings or Settings()
        seeds = np.asarray(seed_heights, dtype=np.float64)
        self.qrs_h = list(seeds[-8:]) if len(seeds) else [0.0]
        self.noise_h = [0.0]
        self.rr = []
        self.last = None            # (mwi index, position, slope) of the last QRS
        self.pending = []           # candidates since the last QRS that were not taken
        self.refractory = int(round(settings.refractory_s * fs))
        self.t_wave = int(round(settings.t_wave_s * fs))
        self._th = None

    def threshold(self):
        if self._th is None:
            n, q = _median(self.noise_h), _median(self.qrs_h)
            self._th = n + self.settings.threshold * (q - n)
        return self._th

    def _rr_mean(self):
        return sum(self.rr) / float(len(self.rr)) if self.rr else None

    def _accept(self, idx, pos, height, slope, out):
        if self.last is not None:
            self.rr = (self.rr + [idx - self.last[0]])[-8:]
        self.qrs_h = (self.qrs_h + [height])[-8:]
        self._th = None
        self.last = (idx, pos, slope)
        self.pending = []
        out.append(pos)

    def _noise(self, idx, pos, height, slope):
        self.noise_h = (self.noise_h + [height])[-8:]
        self._th = None
        self.pending = (self.pending + [(idx, pos, height, slope)])[-MAX_PENDING:]

    def _search_back(self, until, out):
        """No QRS between the last one and `until`: take the best pending candidate, if any."""
        rr = self._rr_mean()
        if self.last is None or rr is None or until - self.last[0] <= self.settings.searchback_rr * rr:
            return
        th = 0.5 * self.threshold()
        best = None
        for c in self.pending:
            if c[0] - self.last[0] > self.refractory and c[2] > th and (best is None or c[2] > best[2]):
                if c[0] - self.last[0] <= self.t_wave and c[3] < 0.5 * self.last[2]:
                    continue
                best = c
        if best is not None:
            rest = [c for c in self.pending if c[0] > best[0]]
            self._accept(best[0], best[1], best[2], best[3], out)
            self.pending = rest
            self._search_back(until, out)

    def feed(self, idx, height, slope, pos):
        out = []
        for i, h, s, p in zip(idx.tolist(), height.tolist(), slope.tolist(), pos.tolist()):
            self._search_back(i, out)
            if self.last is not None and i - self.last[0] < self.refractory:
                continue
            if h > self.threshold():
                if self.last is not None and i - self.last[0] < self.t_wave and s < 0.5 * self.last[2]:
                    self._noise(i, p, h, s)
                else:
                    self._accept(i, p, h, s, out)
            else:
                self._noise(i, p, h, s)
        return out

    def finish(self, end):
        out = []
        self._search_back(end, out)
        return out


def seed_heights(mwi, fs):
    """Maxima of the MWI in each of the first INIT_S seconds (the initial QRS heights)."""
    n = int(fs)
    k = min(int(INIT_S), len(mwi) // n)
    if k == 0:
        return [float(np.sqrt(mwi.max()))] if len(mwi) else [0.0]
    return np.sqrt(mwi[:k * n].reshape(k, n).max(axis=1))


def detect(x, fs, settings=None):
    """R-peak positions (sample numbers of x) of a whole lead sampled at fs Hz."""
    x = np.asarray(x, dtype=np.float64)
    bp, slope, mwi = features(x, fs)
    d = Decider(fs, seed_heights(mwi, fs), settings)
    peaks = d.feed(*candidates(bp, slope, mwi, fs)) + d.finish(len(x))
    return np.asarray(peaks, dtype=np.int64)
