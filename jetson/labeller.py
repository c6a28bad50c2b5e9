"""One lead in, one label per beat out: the beat engine (streaming.py) fed with a whole signal
(batch) or its chunks as they come (--stream), the model's labels written to the per-beat CSV,
matched beats scored against the record's annotations, and the run's speed and latency.
Python 3.6+, numpy.
"""
import csv
import os
import sys
import time

import numpy as np

from . import morphology, quality_gate, scoring, streaming
from .common import DeviceError
from .overlap import ModelProcess, Pipeline
from .rr_features import beat_peaks
from .runners import model_classes, softmax_classifier


class LabelOptions(object):
    """How a signal is labelled: infer_trt.py's flags of the same names."""

    def __init__(self, beats="detect", normalise=None, stream=False, batch=64, block_s=300.0, detector=None,
                 quality=False, thresholds=None, overlap=False):
        self.beats, self.stream, self.batch = beats, bool(stream), int(batch)
        # a stream replayed at full speed (not --realtime): the scalograms and the model in a second
        # process (overlap.py); the same labels, each out a few chunks later
        self.overlap = bool(overlap)
        self.detector = detector   # qrs.Settings (None: the defaults)
        # batch mode works through the signal in blocks of block_s seconds (0: all at once): memory
        # bounded by the block, not the recording; the labels are those of the whole signal at once
        self.block_s = float(block_s)
        self.quality, self.thresholds = bool(quality), thresholds   # --quality: quality_gate.py
        # the whole record's mean R height is not known while it streams
        self.normalise = normalise or ("running" if stream else "record")


def engine_options(run):
    """What the model takes besides the beat's image, as BeatEngine options: the morphology
    features (after the RR features) and the running template's image as a second channel."""
    features = getattr(run, "features", None) or []
    return {"morphology": morphology.FEATURES[0] in features, "template_channel": tuple(run.shape)[0] == 2}


class BeatWriter(object):
    """The per-beat CSV, written row by row to a temp file and renamed when complete."""

    def __init__(self, path, names, fs_in, with_reference, echo, with_quality=False):
        self.path, self.tmp, self.names, self.fs_in, self.echo = path, path + ".tmp", names, fs_in, echo
        self.f = open(self.tmp, "w")
        self.w = csv.writer(self.f, lineterminator="\n")
        self.header = ["sample", "time_s", "predicted", "confidence"] + (["quality"] if with_quality else []) + (
            ["reference", "annotation"] if with_reference else [])
        self.w.writerow(self.header)
        if echo:
            print(",".join(self.header))
        self.rows = 0

    def row(self, sample, label, conf, ref=None, quality=None):
        self._write([sample, "{:.4f}".format(sample / self.fs_in), self.names[label], "{:.4f}".format(conf)] + (
            [] if quality is None else [quality]), ref)

    def unreadable_row(self, sample, quality, ref=None):
        """A beat the quality gate judged unreadable: label U, no confidence."""
        self._write([sample, "{:.4f}".format(sample / self.fs_in), quality_gate.LABEL, "", quality], ref)

    def _write(self, r, ref):
        if ref is not None:
            r += list(ref)
        self.w.writerow(r)
        self.rows += 1
        if self.echo:
            print(",".join(str(v) for v in r))
            sys.stdout.flush()

    def close(self, ok):
        self.f.close()
        if ok:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)


def reader_names(op, classes):
    """The names the CSV gives the model's classes: the operator file's class_names (stage 7
    writes them: the thesis' numbered classes by their label, Normal ... PVC; AAMI's by their
    letter), else the class names themselves (operator files from before)."""
    if "class_names" not in op or "classes" not in op:
        return list(classes)
    names = dict(zip([str(c) for c in op["classes"]], [str(n) for n in op["class_names"]]))
    return [names.get(c, c) for c in classes]


def given_beats(sig, op, beats):
    """--beats annotations: (R peaks at the model's rate, which of them are classified); detect: (None, None)."""
    if beats != "annotations":
        return None, None
    samples, symbols = beat_peaks(sig.ann_samples, sig.ann_symbols)
    given = np.round(samples * float(op["fs"]) / sig.fs).astype(np.int64)
    return given, ~np.isin(symbols, [str(s) for s in op["invalid_symbols"]])


def signal_steps(sig, chunks, block=0):
    """(samples, arrival time, last?): batch gives the whole signal in blocks of `block` samples
    (0: one block), the last one final; a stream each chunk as it comes, then the end of the signal."""
    if chunks is None:
        step = block or max(len(sig.x), 1)
        for start in range(0, max(len(sig.x), 1), step):
            yield sig.x[start:start + step], time.perf_counter(), start + step >= len(sig.x)
        return
    for x, came in chunks:
        yield x, came, False
    yield np.zeros(0), None, True


def record_norm(op, sig, given, keep, block, detector=None):
    """The whole record's mean R height (stage 1's normalisation), from a detection-only pass over
    the signal in blocks: the same beats, heights and mean as the full pass finds (the engine is
    exact chunk by chunk), without holding the record's windows and images at once."""
    engine = streaming.BeatEngine(op, sig.fs, None, "record", given, keep, detector=detector)
    for x, _, last in signal_steps(sig, None, block):
        engine.push(x, final=last)
    return float(np.mean(np.asarray(engine.kept_heights))) if engine.kept_heights else float("nan")


class Clock(object):
    """Processing time, samples in, and for every labelled beat the samples in and the wall time
    since its chunk arrived (the stream's latency)."""

    def __init__(self):
        self.n_in, self.busy, self.lat = 0, 0.0, []   # lat: (input peak, samples in at label, wall latency s)
        self.arrivals = []                            # (last input sample of a chunk, its arrival time)

    def arrived(self, n, came):
        if n:
            self.n_in += n
            self.arrivals.append((self.n_in, came))

    def labelled(self, sample, now):
        self.lat.append((sample, self.n_in, now - next((t for end, t in self.arrivals if end > sample), now)))

    def forget(self):
        while len(self.arrivals) > 1 and self.lat and self.arrivals[0][0] <= self.lat[-1][0]:
            self.arrivals.pop(0)

    def latency(self, fs):
        peaks = np.asarray([s for s, _, _ in self.lat])
        got = np.asarray([g for _, g, _ in self.lat])
        sig_ms = (got - 1 - peaks) / fs * 1000.0
        in_beats = np.searchsorted(peaks, got, side="left") - 1 - np.arange(len(peaks))
        wall_ms = np.asarray([w for _, _, w in self.lat]) * 1000.0
        pct = lambda v, q: float(np.percentile(v, q))  # noqa: E731
        return {"signal_ms_p50": pct(sig_ms, 50), "signal_ms_p99": pct(sig_ms, 99),
                "beats_p50": pct(in_beats, 50), "beats_p99": pct(in_beats, 99),
                "wall_ms_p50": pct(wall_ms, 50), "wall_ms_p99": pct(wall_ms, 99)}


def check_input(sig, opts, score):
    if score and sig.ann_samples is None:
        raise DeviceError("{}: --score needs the record's .atr annotations".format(sig.name))
    if opts.beats == "annotations" and sig.ann_samples is None:
        raise DeviceError("{}: --beats annotations needs the record's .atr annotations".format(sig.name))


def label_signal(run, op, sig, chunks, opts, out_csv, score=False, log=None, holter=None):
    """Classify one lead (a signal_input.Signal; `chunks` yields (samples, arrival time) with
    opts.stream) into the CSV `out_csv`. Returns (detection counts or None, Confusion or None,
    run report dict); `log` (a report.BeatLog) also gets the signal and every labelled beat,
    `holter` (a holter.Holter) every beat found, by class name (None: found, not labelled)."""
    check_input(sig, opts, score)
    classes = model_classes(run)
    given, keep = given_beats(sig, op, opts.beats)
    classify = softmax_classifier(run, opts.batch)
    block = int(opts.block_s * sig.fs) if chunks is None else 0
    t0 = time.perf_counter()
    norm = record_norm(op, sig, given, keep, block, opts.detector) if block and opts.normalise == "record" else None
    options = engine_options(run)
    # overlap.py: ONNX Runtime only; not with a log, which takes the images from this process's classifier
    overlap = None
    if opts.overlap and chunks is not None and log is None and getattr(run, "onnx_path", None):
        overlap = Pipeline(ModelProcess(run.onnx_path, op, options["template_channel"], opts.batch))
    engine = core = streaming.BeatEngine(op, sig.fs, log.wrap(classify) if log else classify, opts.normalise, given,
                                         keep, record_norm=norm, detector=opts.detector, overlap=overlap, **options)
    ref = scoring.Scorer(sig.ann_samples, sig.ann_symbols, sig.fs, classes) if sig.ann_samples is not None else None
    gate = quality_gate.Gate(opts.thresholds) if opts.quality else None
    if gate:
        engine = gate.wrap(engine, sig.fs)
    writer = BeatWriter(out_csv, reader_names(op, classes), sig.fs, ref is not None, echo=opts.stream,
                        with_quality=gate is not None)
    clock, ok = Clock(), False
    clock.busy = time.perf_counter() - t0   # the first pass is processing time too
    try:
        for x, came, last in signal_steps(sig, chunks, block):
            clock.arrived(len(x), came)
            if log and chunks is not None and len(x):
                log.signal(x)
            t0 = time.perf_counter()
            beats = engine.push(x, final=last)
            now = time.perf_counter()
            clock.busy += now - t0
            for beat in beats:
                _, _, sample, label, conf = beat[:5]
                if gate and label is not None and gate.take(beat, writer, ref):   # unreadable: written as U
                    if holter is not None:
                        holter.add(sample, quality_gate.LABEL)
                    if log:
                        log.unreadable(sample, gate.symbol or "")
                    clock.labelled(sample, now)
                    continue
                reference, true = ref.beat(sample, label) if ref else (None, None)
                if holter is not None:
                    holter.add(sample, None if label is None else classes[label])
                if label is None:
                    continue
                writer.row(sample, label, conf, reference, quality_gate.formatted(beat[5]) if gate else None)
                if log:
                    log.beat(sample, label, conf, reference[1] if reference else "", true)
                clock.labelled(sample, now)
            clock.forget()
        check_labelled(sig, op, clock.n_in, len(clock.lat))
        if gate:
            gate.check(sig.name)
        ok = True
    finally:
        core.close()
        writer.close(ok)
    if log:
        log.finish(sig.x if chunks is None else None, ref.missed() if ref else None)
    report = {"beats": len(clock.lat), "seconds_of_ecg": clock.n_in / sig.fs, "processing_s": clock.busy,
              "beats_per_s": len(clock.lat) / clock.busy if clock.busy else None,
              "realtime_factor": (clock.n_in / sig.fs) / clock.busy, "normalisation": opts.normalise,
              "beats_from": opts.beats}
    if opts.stream:
        report["latency"] = clock.latency(sig.fs)
        report["overlap"] = overlap is not None and overlap.sent > 0   # the model process labelled beats
    if gate:
        report["quality"] = gate.report(ref is not None)
    return (ref.detection() if ref else None), (ref.confusion if ref else None), report


def check_labelled(sig, op, n_in, labelled):
    if n_in / sig.fs < (int(op["before"]) + int(op["after"])) / float(op["fs"]):
        raise DeviceError("{}: the signal is {:.3f} s long, shorter than one beat window".format(sig.name,
                                                                                         n_in / sig.fs))
    if labelled == 0:
        raise DeviceError("{}: no beats found (a flat signal, or no ECG in it?)".format(sig.name))
