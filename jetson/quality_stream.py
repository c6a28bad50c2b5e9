"""The quality indices of quality.py for every beat of a signal, fed chunk by chunk or at once
(the same numbers either way), with bounded memory. Python 3.6+, numpy, scipy.

`QualityTracker.samples(x, final)` takes the input's next samples (its own rate: they are
resampled to the model's rate here, as the beat engine does, and fed to the second detector);
`beats(peaks)` takes the beat engine's next R peaks (model-rate sample numbers, in time order);
`ready()` returns [(peak, indices)] for the beats whose indices are final: those whose 10 s
window, the second detector's decisions over it and the engine's beats up to its end are all
known (or the signal has ended). A beat waits WINDOW_AFTER_S + MATCH_S + the second detector's
look-ahead (about 2.5 s) after its R peak: the gate's added latency.
Memory: the samples of the oldest waiting beat's window onwards (or, with no beat waiting, of
the earliest beat still to come, which `ready(floor)` bounds), the beats and second-detector
QRS of that span, and the windows of the last TEMPLATE_BEATS beats.
"""
from bisect import bisect_left, bisect_right

import numpy as np

from . import qrs_second, quality
from .streaming import Resampler


class QualityTracker(object):
    def __init__(self, fs_in, fs):
        self.fs = float(fs)
        self.resampler = Resampler(float(fs_in), self.fs)
        self.second = qrs_second.LengthDetector(self.fs)
        s = lambda v: int(round(v * self.fs))  # noqa: E731
        self.tol, self.before, self.after = s(quality.MATCH_S), s(quality.WINDOW_BEFORE_S), s(quality.WINDOW_AFTER_S)
        self.b_before, self.b_after, self.b_pad = s(quality.BEAT_BEFORE_S), s(quality.BEAT_AFTER_S), s(
            quality.BEAT_PAD_S)
        self.y, self.y0, self.n, self.final = np.zeros(0), 0, 0, False
        self.det1, self.det2, self.waiting = [], [], []   # engine's peaks, second detector's, beats not yet judged
        self.history = []                                 # band-limited windows of the last TEMPLATE_BEATS beats

    def samples(self, x, final=False):
        y = self.resampler.push(x, final)
        self.y = np.concatenate([self.y, y])
        self.n += len(y)
        self.final = self.final or final
        self.det2.extend(self.second.push(y, final))

    def beats(self, peaks):
        for p in peaks:
            p = int(p)
            self.det1.append(p)
            self.waiting.append(p)

    def _second_done(self):
        """Second-detector QRS before this sample number are all known."""
        if self.final:
            return self.n + 1
        return self.second.c_end - int(round(qrs_second.POSITION_S * self.fs)) - 1

    def ready(self, floor=0):
        """Beats whose indices are final, as [(peak, indices)]. `floor`: no beat still to come
        has its R peak before this model-rate sample (the engine's buffer start); samples before
        floor - WINDOW_BEFORE_S are forgotten."""
        out = []
        while self.waiting:
            p = self.waiting[0]
            end = p + self.after
            if not self.final and (self._second_done() <= end + self.tol or self.det1[-1] <= end or self.n <= end):
                break
            self.waiting.pop(0)
            out.append((p, self._indices(p)))
        self._trim(floor)
        return out

    def _window(self, a, b):
        """A copy of the samples [a, b) within the signal (fresh memory: reductions do not depend
        on where a buffer starts)."""
        a, b = max(a, 0), min(b, self.n)
        return np.array(self.y[a - self.y0:b - self.y0], dtype=np.float64)

    def _beat_window(self, p):
        lo, hi = p - self.b_before, p + self.b_after
        a, b = lo - self.b_pad, hi + self.b_pad
        seg = self._window(a, b)
        left = max(a, 0) - a                                  # samples missing before the signal's start
        seg = np.concatenate([np.full(left, seg[0] if len(seg) else 0.0), seg,
                              np.full((b - a) - left - len(seg), seg[-1] if len(seg) else 0.0)])
        return quality.band_limited(seg, self.fs, quality.BAND_HZ)[self.b_pad:self.b_pad + hi - lo]

    def _indices(self, p):
        a, b = p - self.before, p + self.after
        d1 = self.det1[bisect_left(self.det1, a):bisect_right(self.det1, b)]
        d2 = self.det2[bisect_left(self.det2, a):bisect_right(self.det2, b)]
        near2 = self.det2[bisect_left(self.det2, p - self.tol):bisect_right(self.det2, p + self.tol)]
        matched = min(int(quality.agreement(d1, d2, self.tol).sum()), int(quality.agreement(d2, d1, self.tol).sum()))
        k, pw = quality.window_indices(self._window(a, b), self.fs)
        w = self._beat_window(p)
        t = quality.template_match(self.history, w)
        self.history = (self.history + [w])[-quality.TEMPLATE_BEATS:]
        return {"agree": bool(quality.agreement([p], near2, self.tol)[0]), "bsqi": quality.bsqi(len(d1), len(d2),
                                                                                               matched),
                "tsqi": t, "ksqi": k, "psqi": pw}

    def _trim(self, floor):
        """Forget what no waiting or later beat needs."""
        if self.final:
            return
        oldest = self.waiting[0] if self.waiting else min(self.det1[-1] + 1 if self.det1 else self.n, floor)
        lo = oldest - self.before - self.tol
        del self.det1[:max(bisect_left(self.det1, lo) - 1, 0)]   # keep one: ready() needs the last
        del self.det2[:bisect_left(self.det2, lo)]
        keep = max(min(oldest - self.before, oldest - self.b_before - self.b_pad), 0)
        if keep > self.y0:
            self.y = self.y[keep - self.y0:]
            self.y0 = keep
