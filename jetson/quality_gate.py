"""--quality: the signal-quality gate between the beat engine and the per-beat CSV (Python 3.6+, numpy).

The beat engine (streaming.py) runs as without the gate: the same beats, RR features, running
template and labels. `Gate.wrap(engine)` returns an engine whose beats come out with their
quality (quality_stream.py, quality.py) once it is final; a beat the rule calls unreadable is
written with predicted = U and no confidence (the model's label for it is discarded), and its
reference beat, if any, is counted apart. Scoring: EC57 detection counts stay over every
detection (a U beat still pairs with its reference beat); the confusion matrix is over the
readable matched beats. A signal in which every labelled beat is unreadable is an error.
"""
import math

from . import quality
from .common import DeviceError
from .quality_stream import QualityTracker
from .scoring import aami

LABEL = "U"


def thresholds_from(args):
    """quality.Thresholds from infer_trt.py's --quality-* flags (None: the default)."""
    d = quality.Thresholds()
    pick = lambda v, default: default if v is None else v  # noqa: E731
    return quality.Thresholds(pick(args.quality_template, d.template), pick(args.quality_agreement, d.agreement),
                              pick(args.quality_kurtosis, d.kurtosis), pick(args.quality_power, d.power_ratio))


def check_thresholds(th):
    if not 0.0 <= th.template <= 1.0:
        raise DeviceError("--quality-template is a correlation threshold: give a value from 0 to 1")
    if not 0.0 <= th.agreement <= 1.0 or not 0.0 <= th.power_ratio <= 1.0:
        raise DeviceError("--quality-agreement and --quality-power are shares: give values from 0 to 1")
    if th.kurtosis < 0:
        raise DeviceError("--quality-kurtosis must be 0 or more")


def formatted(q):
    """The CSV's quality: truncated (not rounded) to 4 decimals, so that no unreadable beat shows 0.5000."""
    return "{:.4f}".format(math.floor(q * 1e4) / 1e4)


class GatedEngine(object):
    """`engine` (a BeatEngine) plus the quality of its beats: push(x, final) returns, in order, the
    engine's beat tuples extended by (quality, readable) once their quality is final."""

    def __init__(self, engine, fs_in, thresholds):
        self.engine, self.th = engine, thresholds
        self.tracker = QualityTracker(fs_in, engine.fs)
        self.held = []

    def push(self, x, final=False):
        beats = self.engine.push(x, final)
        self.tracker.samples(x, final)
        self.tracker.beats([b[1] for b in beats])
        self.held.extend(beats)
        out = []
        # no beat the engine has still to give comes before its buffer (or the oldest beat its
        # model process still holds)
        for peak, ind in self.tracker.ready(getattr(self.engine, "held_from", 0)):
            b = self.held.pop(0)
            if b[1] != peak:   # the tracker gets every beat the engine gives, in order
                raise RuntimeError("quality gate out of step: beat at {} judged as {}".format(b[1], peak))
            out.append(tuple(b) + (quality.quality(ind, self.th), quality.readable(ind, self.th)))
        return out


class Gate(object):
    """One labelling run's gate: wraps the engine, writes and scores the unreadable beats, and
    counts them for the run report."""

    def __init__(self, thresholds=None):
        self.th = thresholds or quality.Thresholds()
        self.labelled = self.unreadable = self.ref_unreadable = 0
        self.symbol = None
        self.ref_by_class = {}

    def wrap(self, engine, fs_in):
        return GatedEngine(engine, fs_in, self.th)

    def take(self, beat, writer, scorer):
        """Handle a beat the engine labelled (label not None): True when it is unreadable and has
        been written here (as U), False when the caller writes it as usual."""
        self.labelled += 1
        if beat[6]:
            return False
        self.unreadable += 1
        ref = self.symbol = None   # symbol: the matched reference annotation (for the report's strips)
        if scorer is not None:
            k = scorer.matcher.match(beat[2])   # pairs for the detection counts; no confusion entry
            ref = ("", "")
            if k is not None:
                symbol = self.symbol = scorer.matcher.sym[k]
                ref = (aami(symbol), symbol)
                self.ref_unreadable += 1
                self.ref_by_class[ref[0]] = self.ref_by_class.get(ref[0], 0) + 1
        writer.unreadable_row(beat[2], formatted(beat[5]), ref)
        return True

    def check(self, name):
        if self.labelled and self.unreadable == self.labelled:
            raise DeviceError("{}: all {} beats found are unreadable (signal quality below the --quality thresholds): "
                              "no ECG can be read in it (noise only, or the electrodes off?)".format(
                                  name, self.labelled))

    def report(self, scored):
        out = {"label": LABEL, "beats_labelled": self.labelled, "beats_unreadable": self.unreadable,
               "share_unreadable": self.unreadable / float(self.labelled) if self.labelled else None,
               "thresholds": self.th.as_dict()}
        if scored:
            out["reference_beats_unreadable"] = self.ref_unreadable
            out["reference_unreadable_by_class"] = dict(sorted(self.ref_by_class.items()))
        return out


def folder_totals(qualities):
    """The quality blocks of several records' run reports summed (--records' gross line)."""
    keys = ("beats_labelled", "beats_unreadable", "reference_beats_unreadable")
    out = {k: sum(q.get(k, 0) for q in qualities) for k in keys}
    n = out["beats_labelled"]
    out.update(label=LABEL, thresholds=qualities[0]["thresholds"],
               share_unreadable=out["beats_unreadable"] / float(n) if n else None)
    return out


def summary_line(q):
    """One printed line of a run report's quality block."""
    line = "quality    {} of {} labelled beats unreadable ({:.2f} %), written as {}".format(
        q["beats_unreadable"], q.get("beats_labelled", 0), 100.0 * (q["share_unreadable"] or 0.0), q["label"])
    if "reference_beats_unreadable" in q:
        line += "; {} of them reference beats (left out of the classification scores, kept in detection)".format(
            q["reference_beats_unreadable"])
    return line
