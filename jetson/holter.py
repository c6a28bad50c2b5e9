"""A Holter summary of a recording of any length, fed beat by beat in time order (`Holter.add`),
read once at the end (`Holter.summary`). Python 3.6+, numpy only.

Memory does not grow with the beats: a few numbers per 5-minute window (288 rows a day), the
last 9 beat times, the open ectopic sequences and the 10 longest pauses and gaps. The
definitions (also in the summary's "definitions" and docs/design.md):

- a beat is *unreadable* when its class is "U" (the signal-quality gate), *not classified* when
  it was found but got no label (None: the signal's first and last beats; with --beats
  annotations, symbols the model does not take), else *classified* (a model class);
- S / V: the model's classes whose letter is S or V (AAMI names as they are; the thesis model's
  class 3 is the MIT-BIH symbol V, PVC; it has no S class): "n/a" where the model has none;
- burden: S (V) beats as a percentage of the classified beats;
- RR interval: between two consecutive beats, both readable; an RR longer than GAP_S is a *gap*
  (lost signal or asystole: listed apart, not used for heart rate or pauses); a pause is a
  valid RR longer than PAUSE_S;
- heart rate: mean = 60 / mean valid RR; min / max over sliding windows of HR_BEATS consecutive
  valid RR intervals, 60 * HR_BEATS / (time of the window's last beat - time of its first);
- couplet: exactly 2 consecutive S (V) beats; run: 3 or more; bigeminy: 3 or more consecutive
  pairs (non-ectopic, S) or (non-ectopic, V) with nothing between them, non-ectopic meaning a
  classified beat that is neither S nor V. Unreadable and not classified beats and gaps end a
  sequence;
- time: each beat stands for the time from halfway after the previous beat to halfway to the
  next (the first from the start of the recording, the last to its end); the unreadable time is
  that of the unreadable beats;
- trend windows of TREND_S (and of an hour, made of 12 of them) from the start of the
  recording: beats by their time, an RR and an HR window by the time of their last beat.
"""
import collections
import heapq
import math

import numpy as np

from .ectopy import ECTOPIC, MIN_BIGEMINY, MIN_RUN, OTHER, S, V, Sequences
from .scoring import THESIS

UNREADABLE = "U"
HR_BEATS = 8
PAUSE_S = 2.0
GAP_S = 10.0
TREND_S = 300.0
HOUR_S = 3600.0
TOP = 10
UNREAD, UNLABELLED = 3, 4    # beat kinds besides ectopy's OTHER, S, V
# per-window fields
BEATS, N_S, N_V, N_U, RR_N, RR_SUM, HR_MIN, HR_MAX, UNREAD_S, PAUSES = range(10)
EMPTY_ROW = [0, 0, 0, 0, 0, 0.0, np.inf, -np.inf, 0.0, 0]

DEFINITIONS = {
    "burden_pct": "S (V) beats as a percentage of the classified beats (unreadable and not classified beats left out)",
    "rr": "interval between two consecutive beats, both readable; longer than gap_s: a gap (not used for heart "
          "rate or pauses)",
    "heart_rate": "mean: 60 / mean RR; min and max: over sliding windows of {} consecutive RR intervals, "
                  "60 * {} / (time of the window's last beat - time of its first); at_s: time of its last "
                  "beat".format(HR_BEATS, HR_BEATS),
    "pause": "an RR interval longer than pause_s (and at most gap_s); at_s: the beat before it",
    "couplet": "exactly 2 consecutive S (V) beats",
    "run": "3 or more consecutive S (V) beats; at_s: its first beat",
    "bigeminy": "3 or more consecutive pairs (non-ectopic beat, S (V) beat); non-ectopic: classified, neither S "
                "nor V; at_s: its first beat",
    "sequence_breaks": "unreadable and not classified beats, and gaps, end a run, couplet or bigeminy",
    "unreadable_time": "each beat stands for the time from halfway after the previous beat to halfway to the "
                       "next (the first from the start, the last to the end); the time of the unreadable beats",
    "trend": "windows from the start of the recording; beats counted by their time, an RR interval and a heart "
             "rate window by the time of their last beat",
}


def ectopic_classes(classes):
    """{"S": model class or None, "V": ...}: AAMI names as they are, the thesis classes by their
    MIT-BIH symbol (records.class_letters' rule)."""
    symbol = {v: k for k, v in THESIS.items()}
    letters = [symbol[c] for c in classes] if set(classes) <= set(symbol) else list(classes)
    return {k: (classes[letters.index(k)] if k in letters else None) for k in ("S", "V")}


class Holter(object):
    """Holter figures of one recording at `fs` Hz (the beats' sample numbers), for a model with
    these `classes`. add() each beat in time order, then summary() once."""

    def __init__(self, fs, classes):
        self.fs, self.classes = float(fs), list(classes)
        self.ectopic = ectopic_classes(self.classes)
        self.kind_of = {c: OTHER for c in self.classes}
        self.kind_of.update({c: ECTOPIC[k] for k, c in self.ectopic.items() if c is not None})
        self.kind_of[UNREADABLE], self.kind_of[None] = UNREAD, UNLABELLED
        self.counts = collections.OrderedDict((c, 0) for c in self.classes + [UNREADABLE])
        self.n_unlabelled = 0
        self.seqs = [Sequences(ECTOPIC[k]) for k in ("S", "V") if self.ectopic[k] is not None]
        self.win = np.tile(np.asarray(EMPTY_ROW, dtype=np.float64), (16, 1))
        self.n_win = 0
        self.prev_t, self.prev_kind, self.cell_start = None, None, 0.0
        self.chain = collections.deque(maxlen=HR_BEATS + 1)   # times of the last consecutive readable beats
        self.rr_n, self.rr_sum = 0, 0.0
        self.hr_min, self.hr_max = (np.inf, None), (-np.inf, None)
        self.pauses, self.n_pauses, self.gaps, self.n_gaps, self.gap_s = [], 0, [], 0, 0.0
        self.unreadable_s = 0.0
        self.done = None

    def _row(self, t):
        w = int(t // TREND_S)
        if w >= len(self.win):
            grow = np.tile(np.asarray(EMPTY_ROW, dtype=np.float64), (max(w + 1, 2 * len(self.win)) - len(self.win), 1))
            self.win = np.concatenate([self.win, grow])
        self.n_win = max(self.n_win, w + 1)
        return self.win[w]

    def add(self, sample, class_name):
        """One beat: its sample number and class name ("U": unreadable, None: not classified)."""
        if self.done is not None:
            raise ValueError("the summary has been made: no more beats")
        if class_name not in self.kind_of:
            raise ValueError("unknown class {!r} (the model's: {})".format(class_name, ", ".join(self.classes)))
        t = float(sample) / self.fs
        if self.prev_t is not None and t < self.prev_t:
            raise ValueError("beats must come in time order ({} after {})".format(t, self.prev_t))
        kind = self.kind_of[class_name]
        if class_name is None:
            self.n_unlabelled += 1
        else:
            self.counts[class_name] += 1
        row = self._row(t)
        row[BEATS] += 1
        row[N_S] += kind == S
        row[N_V] += kind == V
        row[N_U] += kind == UNREAD
        broken = kind in (UNREAD, UNLABELLED)
        if self.prev_t is None:
            self.chain.clear()
        else:
            mid = (self.prev_t + t) / 2.0
            if self.prev_kind == UNREAD:
                self._unreadable(self.cell_start, mid)
            self.cell_start = mid
            if UNREAD in (kind, self.prev_kind):
                self.chain.clear()
            else:
                broken = self._rr(t, t - self.prev_t, row) or broken
        if kind != UNREAD:
            self.chain.append(t)
            self._heart_rate(t, row)
        for seq in self.seqs:
            seq.push(kind, t, broken)
        self.prev_t, self.prev_kind = t, kind

    def _rr(self, t, rr, row):
        """A valid RR interval ending at t; True when it is a gap (which breaks every chain)."""
        if rr > GAP_S:
            self.n_gaps += 1
            self.gap_s += rr
            _top(self.gaps, (rr, self.prev_t))
            self.chain.clear()
            return True
        self.rr_n += 1
        self.rr_sum += rr
        row[RR_N] += 1
        row[RR_SUM] += rr
        if rr > PAUSE_S:
            self.n_pauses += 1
            row[PAUSES] += 1
            _top(self.pauses, (rr, self.prev_t))
        return False

    def _heart_rate(self, t, row):
        if len(self.chain) <= HR_BEATS:
            return
        hr = 60.0 * HR_BEATS / (t - self.chain[0])
        row[HR_MIN], row[HR_MAX] = min(row[HR_MIN], hr), max(row[HR_MAX], hr)
        if hr < self.hr_min[0]:
            self.hr_min = (hr, t)
        if hr > self.hr_max[0]:
            self.hr_max = (hr, t)

    def _unreadable(self, a, b):
        """Unreadable time [a, b) s, split over the trend windows it spans."""
        self.unreadable_s += b - a
        while b > a:
            end = min((math.floor(a / TREND_S) + 1) * TREND_S, b)
            self._row(a)[UNREAD_S] += end - a
            a = end

    def summary(self, duration_s=None, name=None):
        """The summary dict (made once; duration_s: the recording's length, default the last beat's time)."""
        if self.done is None:
            self.done = self._summary(duration_s, name)
        return self.done

    def _summary(self, duration_s, name):
        last = self.prev_t if self.prev_t is not None else 0.0
        duration = max(float(duration_s) if duration_s is not None else last, last)
        if self.prev_kind == UNREAD:
            self._unreadable(self.cell_start, max(duration, self.cell_start))
        if duration > 0:   # the windows reach the end of the recording
            self._row((math.ceil(duration / TREND_S) - 1) * TREND_S)
        counts = dict(self.counts)
        classified = sum(counts[c] for c in self.classes)
        per_kind = {}
        for k in ("S", "V"):
            c = self.ectopic[k]
            per_kind[k] = None if c is None else counts[c]
        seqs = {k: None for k in ("S", "V")}
        for seq in self.seqs:
            seqs["S" if seq.kind == S else "V"] = seq.result()
        rows = [self._trend_row(self.win[w:w + 1], w * TREND_S, min((w + 1) * TREND_S, duration))
                for w in range(self.n_win)]
        per_hour = int(HOUR_S // TREND_S)
        hours = [self._trend_row(self.win[w:w + per_hour], w * TREND_S, min(w * TREND_S + HOUR_S, duration))
                 for w in range(0, self.n_win, per_hour)]
        return {
            "record": name, "duration_s": duration, "classes": self.classes, "ectopic_classes": self.ectopic,
            "settings": {"hr_window_rr": HR_BEATS, "pause_s": PAUSE_S, "gap_s": GAP_S, "trend_s": TREND_S,
                         "run_min_beats": MIN_RUN, "bigeminy_min_pairs": MIN_BIGEMINY},
            "definitions": DEFINITIONS,
            "beats": {"total": sum(counts.values()) + self.n_unlabelled, "classified": classified,
                      "unreadable": counts[UNREADABLE], "not_classified": self.n_unlabelled, "per_class": counts},
            "burden_pct": {k: (100.0 * n / classified if classified else None) if n is not None else None
                           for k, n in per_kind.items()},
            "ectopy": seqs,
            "heart_rate": {"mean_bpm": 60.0 * self.rr_n / self.rr_sum if self.rr_n else None,
                           "min_bpm": _finite(self.hr_min[0]), "min_at_s": self.hr_min[1],
                           "max_bpm": _finite(self.hr_max[0]), "max_at_s": self.hr_max[1], "rr_intervals": self.rr_n},
            "pauses": {"count": self.n_pauses, "longest": _listed(self.pauses)},
            "gaps": {"count": self.n_gaps, "total_s": self.gap_s, "longest": _listed(self.gaps)},
            "unreadable": {"seconds": self.unreadable_s,
                           "pct": 100.0 * self.unreadable_s / duration if duration else None},
            "trend_5min": rows, "trend_hourly": hours,
        }

    def _trend_row(self, rows, start, end):
        tot = rows.sum(axis=0)
        length = end - start
        return {"start_s": start, "end_s": end, "beats": int(tot[BEATS]),
                "hr_mean_bpm": float(60.0 * tot[RR_N] / tot[RR_SUM]) if tot[RR_N] else None,
                "hr_min_bpm": _finite(rows[:, HR_MIN].min()), "hr_max_bpm": _finite(rows[:, HR_MAX].max()),
                "S": int(tot[N_S]) if self.ectopic["S"] is not None else None,
                "V": int(tot[N_V]) if self.ectopic["V"] is not None else None,
                "unreadable": int(tot[N_U]), "pauses": int(tot[PAUSES]),
                "unreadable_pct": float(min(100.0 * tot[UNREAD_S] / length, 100.0)) if length > 0 else None}


def headline(s):
    """One line of the summary for the console."""
    hr, pct = s["heart_rate"], lambda v: "n/a" if v is None else "{:.1f} %".format(v)  # noqa: E731
    bpm = lambda v: "n/a" if v is None else "{:.0f}".format(v)  # noqa: E731
    return "HR {} / {} / {} bpm (min / mean / max), S {}, V {}, {} pauses, {} unreadable".format(
        bpm(hr["min_bpm"]), bpm(hr["mean_bpm"]), bpm(hr["max_bpm"]), pct(s["burden_pct"]["S"]),
        pct(s["burden_pct"]["V"]), s["pauses"]["count"], pct(s["unreadable"]["pct"]))


def _top(heap, item):
    """Keep the TOP largest (rr, time) items."""
    if len(heap) < TOP:
        heapq.heappush(heap, item)
    elif item > heap[0]:
        heapq.heapreplace(heap, item)


def _listed(heap):
    return [{"rr_s": float(rr), "at_s": float(t)} for rr, t in sorted(heap, key=lambda p: (-p[0], p[1]))]


def _finite(v):
    return float(v) if np.isfinite(v) else None
