"""A second QRS detector, independent of qrs.py, for the quality gate's bSQI: Python 3.6+, numpy, scipy.

Different principle from qrs.py (squared slope of a 5-12 Hz band, integrated; thresholds between
the medians of signal and noise peaks; T-wave check; search-back): the curve length transform
of Zong, Moody and Jiang (Computers in Cardiology 2003; the idea behind WFDB's wqrs), written
here from the paper's description:

1. features (`features`): a low-pass derivative dy (the difference of two adjacent 1/60 s
   boxcars of a 1/60 s boxcar: zeros at 60 Hz and its harmonics, ~25 Hz low-pass) and the
   length transform LT = the sum over 130 ms (centred) of sqrt(c^2 + dy^2): the length of the
   curve, in which slopes much larger than c count linearly and small ones barely. c is
   C_REL x the median of the per-second maxima of |dy| over the first INIT_S seconds, so the
   detector does not depend on the signal's unit. Centred FIRs: exact on a buffer that carries
   FEATURE margin samples each side (chunked input gives the whole-signal numbers).
2. candidates: the local maxima of LT over +-EYE_S / 2, each with its rise (LT minus the least
   LT over the EYE_S before it: a QRS is where the curve suddenly gets long) and its position
   (the largest |dy| within +-POSITION_S).
3. decision (`Decider`): a candidate is a QRS when its rise exceeds Ta / 3 and it comes
   EYE_S (eye-closing) after the last QRS; Ta follows the accepted rises (Ta += (rise - Ta) / 10).
   After NDP_S seconds without a QRS the threshold halves every further second. No search-back,
   no T-wave rule: it fails in other ways than qrs.py, which is what bSQI needs.
"""
import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d

LT_S = 0.13            # length-transform window (Zong: the longest QRS)
EYE_S = 0.25           # eye-closing period
NDP_S = 2.5            # no QRS for this long: the threshold starts to fall
INIT_S = 8.0           # seconds that seed c and Ta
C_REL = 0.05           # c relative to the typical largest |dy| of a second
POSITION_S = 0.06      # the QRS position is looked for within +-POSITION_S of the LT peak

_KERNELS = {}


def _kernels(fs):
    if fs not in _KERNELS:
        n = max(int(round(fs / 60.0)), 1)
        box = np.ones(n) / n
        deriv = np.convolve(box, np.concatenate([np.ones(n), -np.ones(n)]) / n)
        _KERNELS[fs] = (deriv, np.ones(max(int(round(LT_S * fs)), 1) | 1))
    return _KERNELS[fs]


def margin(fs):
    """Samples of context each side that make the candidates of the centre exact."""
    deriv, lt = _kernels(fs)
    return (len(deriv) + len(lt)) // 2 + int(round((EYE_S + POSITION_S) * fs)) + 2


def derivative(x, fs):
    return np.convolve(x, _kernels(fs)[0], mode="same")


def length_transform(dy, c, fs):
    return np.convolve(np.sqrt(c * c + dy * dy), _kernels(fs)[1], mode="same")


def scale(dy, fs):
    """c from the first INIT_S seconds of dy (the per-second maxima's median, times C_REL)."""
    n = int(fs)
    k = min(int(INIT_S), len(dy) // n)
    top = np.abs(dy[:k * n]).reshape(k, n).max(axis=1) if k else np.abs(dy).max(initial=0.0)[None]
    return C_REL * float(np.median(top))


def candidates(dy, lt, fs, lo=0, hi=None):
    """(LT peak index, rise, position) of the candidates whose peak lies in [lo, hi)."""
    hi = len(lt) if hi is None else hi
    r = int(round(EYE_S * fs / 2))
    top = maximum_filter1d(lt, 2 * r + 1, mode="constant", cval=0.0)
    prev = np.concatenate([[np.inf], lt[:-1]])
    idx = np.flatnonzero((lt == top) & (lt > prev))
    idx = idx[(idx >= lo) & (idx < hi)]
    if len(idx) == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    eye = int(round(EYE_S * fs))
    low = minimum_filter1d(lt, eye + 1, origin=eye // 2, mode="nearest")   # least LT over [i - eye, i]
    w = int(round(POSITION_S * fs))
    grid = np.clip(idx[:, None] + np.arange(-w, w + 1)[None, :], 0, len(lt) - 1)
    pos = grid[np.arange(len(idx)), np.abs(dy[grid]).argmax(axis=1)]
    return idx, lt[idx] - low[idx], pos


class Decider(object):
    """Zong's adaptive threshold over the candidates, in time order; `feed` returns the QRS
    positions it accepts (never revised)."""

    def __init__(self, fs, seed_rises):
        self.fs = float(fs)
        seeds = np.asarray(seed_rises, dtype=np.float64)
        self.ta = float(np.median(seeds)) if len(seeds) else 0.0
        self.last = None
        self.eye = int(round(EYE_S * fs))
        self.ndp = int(round(NDP_S * fs))

    def threshold(self, i):
        th = self.ta / 3.0
        if self.last is not None and i - self.last > self.ndp:
            th *= 0.5 ** ((i - self.last - self.ndp) / self.fs)
        return th

    def feed(self, idx, rise, pos):
        out = []
        for i, h, p in zip(idx.tolist(), rise.tolist(), pos.tolist()):
            if self.last is not None and i - self.last < self.eye:
                continue
            if h > self.threshold(i):
                self.ta += (h - self.ta) / 10.0
                self.last = i
                out.append(p)
        return out


def seed_rises(lt, fs):
    """Per-second (max - min) of LT over the first INIT_S seconds: the initial Ta."""
    n = int(fs)
    k = min(int(INIT_S), len(lt) // n)
    if k == 0:
        return [float(np.ptp(lt))] if len(lt) else [0.0]
    block = lt[:k * n].reshape(k, n)
    return block.max(axis=1) - block.min(axis=1)


def init_length(fs):
    """Samples the detector waits for before it starts (the seed period and its margin)."""
    return int(INIT_S * fs) + margin(fs)


class LengthDetector(object):
    """The detector on a stream of samples at fs: `push(x, final)` returns the QRS positions
    (sample numbers from the stream's start) that became final; the same ones as `detect` on
    the whole signal. Keeps margin + one chunk of samples (bounded memory)."""

    def __init__(self, fs):
        self.fs = float(fs)
        self.m = margin(self.fs)
        self.buf, self.b0, self.n, self.c_end = np.zeros(0), 0, 0, 0
        self.c, self.decider = None, None

    def push(self, x, final=False):
        self.buf = np.concatenate([self.buf, np.asarray(x, dtype=np.float64)])
        self.n += len(x)
        if self.decider is None:
            init = int(INIT_S * self.fs)
            if not final and self.n < init + self.m:
                return []
            head = self.buf[:min(self.n, init + self.m)]
            dy = derivative(head, self.fs)
            self.c = scale(dy[:min(self.n, init)], self.fs)
            lt = length_transform(dy, self.c, self.fs)
            self.decider = Decider(self.fs, seed_rises(lt[:min(self.n, init)], self.fs))
        end = self.n if final else self.n - self.m
        if end <= self.c_end:
            return []
        a = max(self.c_end - self.m, 0)
        seg = self.buf[a - self.b0:]
        dy = derivative(seg, self.fs)
        lt = length_transform(dy, self.c, self.fs)
        idx, rise, pos = candidates(dy, lt, self.fs, self.c_end - a, end - a)
        out = self.decider.feed(idx + a, rise, pos + a)
        self.c_end = end
        keep = max(self.c_end - self.m, 0)
        if keep > self.b0:
            self.buf = self.buf[keep - self.b0:]
            self.b0 = keep
        return out


def detect(x, fs):
    """QRS positions (sample numbers of x) of a whole lead sampled at fs Hz."""
    return np.asarray(LengthDetector(fs).push(x, final=True), dtype=np.int64)
