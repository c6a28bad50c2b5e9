"""ANSI/AAMI EC57-style scoring of the device's beats against reference annotations (.atr).
Python 3.6+, numpy only.

Matching: detected beats are taken in time order; each is paired with the nearest reference
beat not yet paired that lies within 150 ms (MATCH_S), or with none. This runs online (a
stream scores as it goes) and gives the same pairs on the whole record; on the 48 MIT-BIH
records its TP counts are compared with wfdb.processing.compare_annotations in
bench/bench_detection.py. Reference beats are the annotations with beat symbols
(rr_features.BEAT_SYMBOLS). As EC57 prescribes, detections inside ventricular flutter /
fibrillation episodes (between '[' and ']' annotations) that match no beat are not false
positives; the raw count is reported beside (vf_fp).

Classes: AAMI (N = N L R e j, S = A a J S, V = V E, F = F, Q = / f Q) for every reference; a
model whose classes are AAMI names is scored in them; the thesis model ("0".."4" = N, L, R, V,
/) is scored in its own classes, and beats whose symbol is none of them count only for detection.
"""
import numpy as np

from .rr_features import beat_peaks

MATCH_S = 0.15
AAMI = {"N": "N", "L": "N", "R": "N", "e": "N", "j": "N", "A": "S", "a": "S", "J": "S", "S": "S",
        "V": "V", "E": "V", "F": "F", "/": "Q", "f": "Q", "Q": "Q"}
THESIS = {"N": "0", "L": "1", "R": "2", "V": "3", "/": "4"}


def aami(symbol):
    return AAMI.get(symbol, "Q")


def model_class_of(classes):
    """symbol -> model class name, for the models we know (None: not scorable by class)."""
    if classes and set(classes) <= set("NSVFQ"):
        return lambda s: aami(s) if aami(s) in classes else None
    if classes and set(classes) <= set(THESIS.values()):
        return lambda s: THESIS.get(s) if THESIS.get(s) in classes else None
    return None


def vf_intervals(samples, symbols):
    """[start, end) sample ranges between '[' and ']' annotations."""
    out, start = [], None
    for s, a in zip(samples, symbols):
        if a == "[":
            start = s
        elif a == "]" and start is not None:
            out.append((start, s))
            start = None
    if start is not None:
        out.append((start, np.iinfo(np.int64).max))
    return out


class Matcher(object):
    """Online pairing of detected beats with reference beats (see the module docstring)."""

    def __init__(self, ann_samples, ann_symbols, fs):
        self.ref, self.sym = beat_peaks(ann_samples, ann_symbols)
        self.ref = np.asarray(self.ref, dtype=np.int64)
        self.used = np.zeros(len(self.ref), bool)
        self.window = int(round(MATCH_S * fs))
        self.vf = vf_intervals(ann_samples, ann_symbols)
        self.tp = self.fp = self.vf_fp = 0

    def match(self, sample):
        """Index of the reference beat paired with a detection at `sample`, or None."""
        lo = int(np.searchsorted(self.ref, sample - self.window, side="left"))
        hi = int(np.searchsorted(self.ref, sample + self.window, side="right"))
        best = None
        for k in range(lo, hi):
            if not self.used[k] and (best is None or abs(self.ref[k] - sample) < abs(self.ref[best] - sample)):
                best = k
        if best is None:
            if any(a <= sample < b for a, b in self.vf):
                self.vf_fp += 1
            else:
                self.fp += 1
            return None
        self.used[best] = True
        self.tp += 1
        return best

    def detection(self):
        fn = int((~self.used).sum())
        return counts(self.tp, fn, self.fp, self.vf_fp)


def counts(tp, fn, fp, vf_fp=0):
    return {"tp": int(tp), "fn": int(fn), "fp": int(fp), "fp_in_vf_excluded": int(vf_fp),
            "se": 100.0 * tp / (tp + fn) if tp + fn else float("nan"),
            "ppv": 100.0 * tp / (tp + fp) if tp + fp else float("nan")}


class Confusion(object):
    """Confusion matrix of matched beats in the model's classes, per-class Se / +P / F1."""

    def __init__(self, classes):
        self.classes = list(classes)
        self.cm = np.zeros((len(classes), len(classes)), np.int64)
        self.to_class = model_class_of(classes)
        self.other = 0

    def add(self, symbol, predicted):
        true = self.to_class(symbol) if self.to_class else None
        if true is None:
            self.other += 1
            return
        self.cm[self.classes.index(true), predicted] += 1

    def add_indices(self, true, predicted):
        """Pairs of class indices (a folder of labelled images)."""
        np.add.at(self.cm, (np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)

    def merge(self, other):
        self.cm += other.cm
        self.other += other.other

    def summary(self):
        cm = self.cm
        tp = np.diag(cm).astype(float)
        se = np.where(cm.sum(1) > 0, 100 * tp / np.maximum(cm.sum(1), 1), np.nan)
        ppv = np.where(cm.sum(0) > 0, 100 * tp / np.maximum(cm.sum(0), 1), np.nan)
        f1 = np.where(se + ppv > 0, 2 * se * ppv / np.maximum(se + ppv, 1e-12), 0.0)
        per = {c: {"se": _num(se[i]), "ppv": _num(ppv[i]), "f1": _num(f1[i] / 100.0), "n": int(cm[i].sum())}
               for i, c in enumerate(self.classes)}
        total = int(cm.sum())
        return {"classes": self.classes, "confusion": cm.tolist(), "per_class": per,
                "accuracy": _num(tp.sum() / total) if total else None, "matched_beats": total,
                "matched_other_symbols": int(self.other)}


class Scorer(object):
    """A signal's detected and labelled beats scored as they come: the EC57 pairing (Matcher) and
    the confusion of the matched beats in the model's classes (Confusion)."""

    def __init__(self, ann_samples, ann_symbols, fs, classes):
        self.matcher, self.confusion, self.classes = Matcher(ann_samples, ann_symbols, fs), Confusion(classes), classes

    def beat(self, sample, label):
        """((AAMI class, symbol) of the paired reference beat, or ("", "") for none; its index among
        the model's classes or None). A beat the model does not label (label None) only pairs."""
        k = self.matcher.match(sample)
        if label is None or k is None:
            return ("", ""), None
        symbol = self.matcher.sym[k]
        self.confusion.add(symbol, label)
        true = self.confusion.to_class(symbol) if self.confusion.to_class else None
        return (aami(symbol), symbol), (None if true is None else self.classes.index(true))

    def detection(self):
        return self.matcher.detection()

    def missed(self):
        """(samples, symbols) of the reference beats no detection paired."""
        m = self.matcher
        return m.ref[~m.used], m.sym[~m.used]


class Totals(object):
    """Gross scores over records: detection counts summed, confusions merged."""

    def __init__(self):
        self.det, self.confusion = None, None

    def add(self, det, confusion):
        keys = ("tp", "fn", "fp", "fp_in_vf_excluded")
        self.det = dict(det) if self.det is None else {k: self.det[k] + det[k] for k in keys}
        if self.confusion is None:
            self.confusion = Confusion(confusion.classes)
        self.confusion.merge(confusion)

    def detection(self):
        d = self.det
        return counts(d["tp"], d["fn"], d["fp"], d["fp_in_vf_excluded"])


def _num(v):
    v = float(v)
    return None if np.isnan(v) else v


def format_score(name, det, cls):
    lines = ["{}: detection Se {:.2f} %  +P {:.2f} %  (TP {}, FN {}, FP {}; {} detections in VF episodes "
             "not counted)".format(name, det["se"], det["ppv"], det["tp"], det["fn"], det["fp"],
                                   det["fp_in_vf_excluded"])]
    if cls and cls["matched_beats"]:
        c = cls["classes"]
        lines.append("  confusion over {} matched beats (rows: reference, columns: predicted; {} matched beats of "
                     "other symbols left out)".format(cls["matched_beats"], cls["matched_other_symbols"]))
        lines.append("        " + "".join("{:>8}".format(k) for k in c))
        for k, row in zip(c, cls["confusion"]):
            lines.append("{:>8}".format(k) + "".join("{:>8d}".format(v) for v in row))
        for k in c:
            p = cls["per_class"][k]
            lines.append("  {:>4}: n {:>6}  Se {}  +P {}  F1 {}".format(
                k, p["n"], _fmt(p["se"]), _fmt(p["ppv"]), _fmt(p["f1"], 4)))
    return "\n".join(lines)


def _fmt(v, digits=2):
    return "  n/a" if v is None else ("{:." + str(digits) + "f}").format(v)

