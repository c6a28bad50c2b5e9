"""The --report log with bounded memory for recordings of any length. Python 3.6+, numpy.

report.BeatLog keeps every sample of the input (for the strip pages) and Python lists per
beat: fine for MIT-BIH's 30 minutes, not for a day (31 M samples at 360 Hz). LongBeatLog gives
the same report up to LONG_S (it keeps the same things until then, so a short record's report
is unchanged, byte for byte), and past it keeps only
- the first HEAD_S seconds at full rate (the strip pages shown),
- an envelope of the whole signal, the minimum and maximum of every BIN_S seconds (the hourly
  overview strips; 2 float32 per bin: 17 MB a day at any sampling rate),
- SNIPPET_S either side of each gallery beat still in a gallery (a stream keeps the last
  RECENT_S at full rate to cut them from, a whole signal is cut at the end),
- per beat five numbers in numpy arrays (22 bytes: sample, class, confidence, reference).
Used for --report without --plot (--plot draws every minute of the signal, so it keeps it all).
"""
import numpy as np

from .report import UNREADABLE, BeatLog, class_counts

LONG_S = 3600.0
HEAD_S = 600.0
BIN_S = 0.04
RECENT_S = 60.0
SNIPPET_S = 1.0


class Grow(object):
    """A 1-D numpy array grown by appending (amortised doubling)."""

    def __init__(self, dtype):
        self.a, self.n = np.zeros(1024, dtype), 0

    def _room(self, k):
        if self.n + k > len(self.a):
            self.a = np.concatenate([self.a, np.zeros(max(len(self.a), self.n + k - len(self.a)), self.a.dtype)])

    def append(self, v):
        self._room(1)
        self.a[self.n] = v
        self.n += 1

    def extend(self, v):
        self._room(len(v))
        self.a[self.n:self.n + len(v)] = v
        self.n += len(v)

    def values(self):
        return self.a[:self.n]

    def shrink(self):
        """Give back the room kept for growing (at the end)."""
        self.a = self.a[:self.n].copy()

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.values()[i]


class Symbols(object):
    """Short strings (reference symbols) as small integer codes."""

    def __init__(self):
        self.codes, self.names, self.index = Grow(np.int16), [""], {"": 0}

    def append(self, s):
        if s not in self.index:
            self.index[s] = len(self.names)
            self.names.append(s)
        self.codes.append(self.index[s])

    def __len__(self):
        return len(self.codes)

    def __getitem__(self, i):
        return self.names[self.codes[i]]


class Envelope(object):
    """Minimum and maximum of every `bin_len` samples, fed in chunks."""

    def __init__(self, bin_len):
        self.bin = int(bin_len)
        self.lo, self.hi, self.carry = Grow(np.float32), Grow(np.float32), np.zeros(0)

    def push(self, x):
        if len(self.carry):
            x = np.concatenate([self.carry, x])
        k = len(x) // self.bin * self.bin
        if k:
            blocks = x[:k].reshape(-1, self.bin)
            self.lo.extend(blocks.min(axis=1))
            self.hi.extend(blocks.max(axis=1))
        self.carry = np.array(x[k:])

    def finish(self):
        if len(self.carry):
            self.lo.append(self.carry.min())
            self.hi.append(self.carry.max())
        self.carry = np.zeros(0)


class SparseSignal(object):
    """What a long recording's log keeps of its signal, sliced like the array: x[a:b] gives the
    samples a..b-1, NaN where nothing is kept (len(x): the whole length)."""

    def __init__(self, n, head, snippets):
        self.n, self.head, self.snippets = n, head, snippets   # snippets: [(first sample, array)]

    def __len__(self):
        return self.n

    def __getitem__(self, sl):
        a, b = sl.start or 0, self.n if sl.stop is None else min(sl.stop, self.n)
        out = np.full(max(b - a, 0), np.nan)
        for start, arr in [(0, self.head)] + list(self.snippets):
            lo, hi = max(a, start), min(b, start + len(arr))
            if hi > lo:
                out[lo - a:hi - a] = arr[lo - start:hi - start]
        return out


class LongBeatLog(BeatLog):
    """report.BeatLog for an input at `fs` Hz that bounds its memory past LONG_S (module docstring)."""

    def __init__(self, fs, per_pair=8, low_confidence=0.6, long_s=LONG_S, head_s=HEAD_S):
        super(LongBeatLog, self).__init__(per_pair, low_confidence)
        self.fs = float(fs)
        self.long_n, self.head_n = int(round(long_s * fs)), int(round(head_s * fs))
        self.half, self.recent_n = int(round(SNIPPET_S * fs)), int(round(RECENT_S * fs))
        self.sample, self.pred, self.conf, self.true = Grow(np.int64), Grow(np.int16), Grow(np.float64), Grow(np.int16)
        self.ref = Symbols()
        self.envelope = Envelope(max(int(round(BIN_S * fs)), 1))
        self.n_in, self.long, self.head = 0, False, None
        self.recent, self.recent0 = np.zeros(0), 0
        self.snips, self.pending = {}, {}     # beat number -> (first sample, samples) / (first, end)

    def signal(self, x):
        x = np.array(x, dtype=np.float64)
        self.envelope.push(x)
        self.n_in += len(x)
        if not self.long:
            self.chunks.append(x)
            if self.n_in > self.long_n:
                full = np.concatenate(self.chunks)
                self.chunks = []
                self._go_long(full)
            return
        self.recent = np.concatenate([self.recent, x])
        cut = min([self.n_in - self.recent_n] + [a for a, _ in self.pending.values()]) - self.recent0
        if cut > 0:
            self.recent, self.recent0 = self.recent[cut:], self.recent0 + cut
        self._resolve(self.n_in)

    def _go_long(self, full):
        """The signal so far (from sample 0) passed LONG_S: keep its head and the gallery's snippets."""
        self.long, self.head = True, np.array(full[:self.head_n])
        self.recent0 = max(len(full) - self.recent_n, 0)
        self.recent = np.array(full[self.recent0:])
        for n in self._shown():
            self._snap(n)
        self._resolve(len(full), full)

    def _stored_true(self, true):
        return -1 if true is None else true   # an int array: -1 for none

    def beat(self, sample, label, conf, ref="", true=None):
        heap = BeatLog.beat(self, sample, label, conf, ref, true)
        n = len(self.sample) - 1
        if heap is None:
            return
        if self.long and any(item[1] == -n for item in heap):
            self._snap(n)
            self._resolve(self.n_in)
            if len(self.snips) + len(self.pending) > 2 * (self.per_pair * (len(self.errors) + 1)) + 32:
                shown = self._shown()
                self.snips = {k: v for k, v in self.snips.items() if k in shown}
                self.pending = {k: v for k, v in self.pending.items() if k in shown}

    def _shown(self):
        return set(-item[1] for heap in list(self.errors.values()) + [self.low] for item in heap)

    def _snap(self, n):
        s = int(self.sample[n])
        self.pending[n] = (max(s - self.half, 0), s + self.half)

    def _resolve(self, n_in, full=None, final=False):
        """Cut the pending snippets whose samples have all come (final: all of them, as far as they go)."""
        for n, (a, b) in list(self.pending.items()):
            if b <= n_in or final:
                b = min(b, n_in)
                src = SparseSignal(n_in, self.head, [(0, full)] if full is not None else [(self.recent0, self.recent)])
                self.snips[n] = (a, src[a:b])
                del self.pending[n]

    def finish(self, x=None, missed=None):
        if x is not None:             # the whole signal at once (batch): nothing was kept so far
            x = np.asarray(x, dtype=np.float64)
            self.envelope.push(x)
            self.n_in = len(x)
            if len(x) > self.long_n:
                self._go_long(x)
                self._resolve(len(x), x, final=True)
        elif self.long:
            self._resolve(self.n_in, final=True)
        self.envelope.finish()
        for g in (self.sample, self.pred, self.conf, self.true, self.ref.codes, self.envelope.lo, self.envelope.hi):
            g.shrink()
        if self.long:
            self.x = SparseSignal(self.n_in, self.head, [v for k, v in sorted(self.snips.items())
                                                         if k in self._shown()])
            self.recent = np.zeros(0)
        else:
            self.x = x if x is not None else (np.concatenate(self.chunks) if self.chunks else np.zeros(0))
        self.chunks, self.missed = [], missed

    def class_counts(self, n_classes):
        return class_counts(self.pred.values().astype(np.int64), n_classes)

    def beats(self):
        """The beats of the strip pages (all, or those of the head of a long recording)."""
        k = int(np.searchsorted(self.sample.values(), len(self.head))) if self.long else len(self.sample)
        p, t = self.pred.values()[:k], self.true.values()[:k]
        return {"sample": self.sample.values()[:k].tolist(), "pred": p.tolist(),
                "ref": [self.ref[i] for i in range(k)], "wrong": ((t >= 0) & (p != UNREADABLE) & (t != p)).tolist()}


def strip_input(log):
    """(signal, beats) of the strip pages: the whole signal, or a long recording's head."""
    return (log.head if getattr(log, "long", False) else log.x), log.beats()
