"""A record, CSV or EDF file classified (classify_input), or every record of a folder scored
(score_folder): the input opened, the labeller run, the scores printed and written beside the
CSV, the strips (--plot) and the HTML report (--report). Python 3.6+, numpy; matplotlib for
pictures only.
"""
import os
import sys

from . import edf_input, holter_report, long_log, quality_gate, report, scoring
from . import signal_input as si
from .common import DeviceError, write_json_atomic
from .holter import Holter, headline
from .labeller import label_signal
from .runners import model_classes


class Source(object):
    """Where the lead comes from: a WFDB record (`record`, `lead`), a CSV (`csv`, `fs`, `column`) or
    an EDF/EDF+ file (`edf`, `lead`); with `stream`, in chunks of `chunk_s` seconds, read at
    `realtime` times real-time pace (None: at once)."""

    def __init__(self, record=None, csv=None, fs=None, column=None, lead=None, stream=False, chunk_s=0.25,
                 realtime=None, edf=None):
        self.record, self.csv, self.fs, self.column, self.lead = record, csv, fs, column, lead
        self.stream, self.chunk_s, self.realtime, self.edf = stream, chunk_s, realtime, edf

    def open(self, op):
        """(Signal, chunk generator or None)."""
        window_s = (int(op["before"]) + int(op["after"])) / float(op["fs"])
        if self.record:
            sig = si.read_wfdb(self.record, self.lead)
            si.check_signal(sig.x, sig.fs, sig.name, window_s)
            chunks = si.array_chunks(sig.x, sig.fs, max(int(self.chunk_s * sig.fs), 1), self.realtime) \
                if self.stream else None
            return sig, chunks
        if self.edf:
            return edf_input.open_source(self.edf, self.lead, self.stream, self.chunk_s, self.realtime, window_s)
        if self.lead is not None:
            raise DeviceError("--lead is for WFDB records; a CSV's lead is chosen with --column")
        si.check_fs(self.fs, self.csv)
        if self.stream:
            chunks = si.csv_chunks(self.csv, self.fs, self.column, max(int(self.chunk_s * self.fs), 1), self.realtime)
            return si.Signal(None, self.fs, self.csv if self.csv != "-" else "<stdin>"), chunks
        sig = si.read_csv(self.csv, self.fs, self.column)
        si.check_signal(sig.x, sig.fs, sig.name, window_s)
        return sig, None

    def describe(self):
        return "stream, {:g} s chunks".format(self.chunk_s) if self.stream else "whole signal"


class Pictures(object):
    """--plot (strips beside the CSV), --report DIR (one HTML page) and their gallery settings;
    `model` and `backend` are named on the report."""

    def __init__(self, plot=False, report_dir=None, gallery=8, low_confidence=0.6, model="", backend=""):
        self.plot, self.report_dir, self.gallery, self.low_confidence = plot, report_dir, gallery, low_confidence
        self.model, self.backend = model, backend

    def wanted(self):
        return bool(self.plot or self.report_dir)

    def new_log(self, fs=None):
        """The run's log: bounded for long recordings (long_log) when only the report needs it."""
        if self.report_dir and not self.plot and fs:
            return long_log.LongBeatLog(fs, self.gallery, self.low_confidence)
        return report.BeatLog(self.gallery, self.low_confidence) if self.wanted() else None


def json_beside(csv_path):
    base = csv_path[:-4] if csv_path.endswith(".csv") else csv_path
    return base + ".score.json"


def holter_json(csv_path):
    return (csv_path[:-4] if csv_path.endswith(".csv") else csv_path) + ".holter.json"


def strips_folder(out_csv):
    return (out_csv[:-4] if out_csv.endswith(".csv") else out_csv) + "_strips"


def class_letters(classes):
    """What a plot writes for each class: the MIT-BIH symbol of a thesis class (0 -> N, 1 -> L,
    2 -> R, 3 -> V, 4 -> /), an AAMI class's own letter."""
    symbol = {v: k for k, v in scoring.THESIS.items()}
    return [symbol[c] for c in classes] if set(classes) <= set(symbol) else list(classes)


def write_pictures(pictures, run, op, sig, log, summary, out_csv, source, report_dir=None, holter=None):
    """The strips in <out>_strips/ (pictures.plot) and the HTML report in report_dir, with the
    Holter section when `holter` (its summary) is given. Each folder is replaced whole
    (report.replace_folder)."""
    classes = model_classes(run)
    letters = class_letters(classes)
    name = os.path.basename(sig.name)
    strip_x, strip_beats = long_log.strip_input(log)
    strips = report.strip_pages(strip_x, sig.fs, strip_beats, letters,
                                "{}: {}".format(name, os.path.basename(pictures.model)), log.missed)
    try:
        if pictures.plot:
            folder = report.replace_folder(strips_folder(out_csv), {"strip_{:03d}.png".format(k + 1): png
                                                              for k, png in enumerate(strips)})
            print("plots      {} pages -> {}".format(len(strips), folder))
        if report_dir:
            fs_model = float(op["fs"])
            facts = [("input", sig.name), ("model", pictures.model), ("backend", pictures.backend),
                     ("sampling rate (Hz)", "{:g}".format(sig.fs)), ("beats", summary["run"]["beats_from"]),
                     ("processing", source.describe()),
                     ("amplitude normalisation", summary["run"]["normalisation"]),
                     ("per-beat CSV", os.path.basename(out_csv))]
            files = report.device_report(log, sig.fs, classes, letters, summary, "ECG report: {}".format(name),
                                         (int(op["before"]) / fs_model, int(op["after"]) / fs_model), facts, strips,
                                         holter_report.sections(log, sig.fs, letters, holter, name,
                                                                os.path.basename(holter_json(out_csv))))
            folder = report.replace_folder(report_dir, files)
            print("report     -> {}".format(os.path.join(folder, "index.html")))
    except report.ReportError as e:
        raise DeviceError(str(e))


def print_report(out_csv, run_report):
    print("beats      {} labelled -> {}".format(run_report["beats"], out_csv))
    print("speed      {:.1f} beats/s, {:.2f} s for {:.0f} s of ECG: {:.0f}x real time".format(
        run_report["beats_per_s"] or 0, run_report["processing_s"], run_report["seconds_of_ecg"],
        run_report["realtime_factor"]))
    lat = run_report.get("latency")
    if lat:
        print("latency    R peak in the input -> label: p50 {:.0f} ms ({:.0f} beats), p99 {:.0f} ms ({:.0f} beats) "
              "of signal; wall clock p50 {:.0f} ms, p99 {:.0f} ms".format(
                  lat["signal_ms_p50"], lat["beats_p50"], lat["signal_ms_p99"], lat["beats_p99"],
                  lat["wall_ms_p50"], lat["wall_ms_p99"]))
        if run_report.get("overlap"):
            print("           (the model in a second process, a few chunks behind the engine: --realtime or "
                  "--no-overlap for a live device's latency)")
        print("sustained  {:.0f}x real time (processing time only)".format(run_report["realtime_factor"]))
    if "quality" in run_report:
        print(quality_gate.summary_line(run_report["quality"]))


def score_json(det, confusion, run_report, name):
    return {"record": name, "detection": det, "classification": confusion.summary() if confusion else None,
            "run": run_report}


def classify_input(run, op, source, opts, out, score=False, pictures=None, holter=False):
    """--record / --csv / --edf: the per-beat CSV `out`, with --score the scores beside it, with
    --holter the Holter summary beside it, and the pictures."""
    pictures = pictures or Pictures()
    sig, chunks = source.open(op)
    log = pictures.new_log(sig.fs)
    acc = Holter(sig.fs, model_classes(run)) if holter else None
    det, confusion, run_report = label_signal(run, op, sig, chunks, opts, out, score, log, acc)
    print_report(out, run_report)
    summary = score_json(det, confusion, run_report, sig.name)
    if score:
        print(scoring.format_score(sig.name, det, confusion.summary()))
        write_json_atomic(json_beside(out), summary)
        print("score      -> {}".format(json_beside(out)))
    if acc is not None:
        acc = acc.summary(run_report["seconds_of_ecg"], sig.name)
        write_json_atomic(holter_json(out), acc)
        print("holter     {} -> {}".format(headline(acc), holter_json(out)))
    if log:
        write_pictures(pictures, run, op, sig, log, summary, out, source, pictures.report_dir, acc)


def record_list(folder, names):
    if not os.path.isdir(folder):
        raise DeviceError("{}: record folder not found".format(folder))
    if not names:
        listing = os.path.join(folder, "RECORDS")
        if os.path.isfile(listing):
            names = [l.strip() for l in open(listing) if l.strip()]
        else:
            names = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".hea"))
    for n in names:
        for ext in (".hea", ".atr"):
            if not os.path.isfile(os.path.join(folder, n + ext)):
                raise DeviceError("{}: missing (scoring a folder needs every record's .hea and .atr)".format(
                    os.path.join(folder, n + ext)))
    if not names:
        raise DeviceError("{}: no records".format(folder))
    return names


def score_folder(run, op, folder, names, source, opts, out_dir, pictures=None):
    """--records DIR [R ...]: every record classified and scored into out_dir; per-record and gross totals."""
    pictures = pictures or Pictures()
    names = record_list(folder, names)
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    rows, totals = [], scoring.Totals()
    for name in progress(names, "records"):
        source.record = os.path.join(folder, name)
        sig, chunks = source.open(op)
        out = os.path.join(out_dir, name + ".csv")
        log = pictures.new_log()
        det, confusion, run_report = label_signal(run, op, sig, chunks, opts, out, True, log)
        summary = score_json(det, confusion, run_report, name)
        write_json_atomic(json_beside(out), summary)
        if log:
            write_pictures(pictures, run, op, sig, log, summary, out, source)
        rows.append({"record": name, "detection": det, "accuracy": confusion.summary()["accuracy"],
                     "beats": run_report["beats"], "processing_s": run_report["processing_s"],
                     "seconds_of_ecg": run_report["seconds_of_ecg"]})
        if "quality" in run_report:
            rows[-1]["quality"] = run_report["quality"]
        totals.add(det, confusion)
    print_folder(rows, totals)
    gross = {"detection": totals.detection(), "classification": totals.confusion.summary()}
    if opts.quality:
        gross["quality"] = quality_gate.folder_totals([r["quality"] for r in rows])
        print(quality_gate.summary_line(gross["quality"]))
    path = os.path.join(out_dir, "scores.json")
    write_json_atomic(path, {"records": rows, "gross": gross})
    print("scores     -> {}".format(path))


def print_folder(rows, totals):
    secs = sum(r["seconds_of_ecg"] for r in rows)
    busy = sum(r["processing_s"] for r in rows)
    print("{:>8} {:>7} {:>7} {:>6} {:>5} {:>5} {:>9}".format("record", "Se %", "+P %", "TP", "FN", "FP", "accuracy"))
    for r in rows:
        d = r["detection"]
        print("{:>8} {:>7.2f} {:>7.2f} {:>6d} {:>5d} {:>5d} {:>9}".format(
            r["record"], d["se"], d["ppv"], d["tp"], d["fn"], d["fp"],
            "n/a" if r["accuracy"] is None else "{:.4f}".format(r["accuracy"])))
    print(scoring.format_score("gross ({} records)".format(len(rows)), totals.detection(),
                               totals.confusion.summary()))
    print("speed      {} beats in {:.1f} s: {:.1f} beats/s, {:.0f}x real time".format(
        sum(r["beats"] for r in rows), busy, sum(r["beats"] for r in rows) / busy, secs / busy))


def progress(items, unit):
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, unit=unit, file=sys.stderr)
