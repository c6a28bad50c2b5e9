"""Classify heartbeats on the device with a TensorRT engine (or an ONNX file via ONNX Runtime).

    python3 infer_trt.py --engine ecg_fp16.engine --images test_images
    python3 infer_trt.py --engine ecg_fp16.engine --record mitdb/207 --operator cwt_operator.npz
    python3 infer_trt.py --backend onnxruntime --onnx ecg_model_float.onnx --images test_images

--images: a folder laid out like test_images/<class>/*.png -> accuracy, confusion matrix,
per-class F1, latency p50/p90/p99 at batch 1 and throughput at --batch.
--record: a WFDB record (with its .atr beat annotations) -> the stage-1 preprocessing here, one
label per beat in a CSV (--out), beats/s and the real-time factor. --csv FILE --fs HZ and
--edf FILE (EDF/EDF+, a Holter's export; needs pyedflib) the same without annotations.
--plot / --report DIR (record, CSV or EDF input, needs matplotlib): PNG strips of the signal with every
beat's label, and one HTML page with the summary, the strips and the beats to look at (report.py).
--holter (record or CSV): a Holter summary in <out>.holter.json (holter.py) and, with --report, a
section of the page with the hourly table, the heart-rate trend and, past an hour, hourly overviews.
"""
import argparse
import os
import sys

if __name__ in ("__main__", "__mp_main__") and not __package__:   # `cd jetson && python3 infer_trt.py`: as jetson.infer_trt
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import jetson  # noqa: F401,E402
    __package__ = "jetson"

from . import edf_input, qrs, quality_gate, report, scalograms  # noqa: E402
from .common import DeviceError, main_guard  # noqa: E402
from .image_folder import classify_folder  # noqa: E402
from .labeller import LabelOptions  # noqa: E402
from .records import Pictures, Source, classify_input, score_folder, strips_folder  # noqa: E402
from .runners import open_runner  # noqa: E402


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", choices=["tensorrt", "onnxruntime"], default="tensorrt")
    p.add_argument("--engine", help="TensorRT engine (backend tensorrt)")
    p.add_argument("--onnx", help="ONNX model (backend onnxruntime)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", help="folder of <class>/*.png scalograms")
    what.add_argument("--record", help="WFDB record path without extension")
    what.add_argument("--csv", help="CSV file of one lead, '-' for standard input (needs --fs)")
    what.add_argument("--records", nargs="+", metavar="DIR [R ...]",
                      help="score every record of a folder (or the records named): per-record and gross totals")
    what.add_argument("--edf", metavar="FILE", help="EDF/EDF+ (or BDF) file: its rate and units are read from it; "
                                                    "the lead with --lead (needs pyedflib)")
    p.add_argument("--lead", help="WFDB or EDF lead: name (MLII) or 0-based index (default: the first; EDF+ "
                                  "annotation channels are not counted)")
    p.add_argument("--fs", type=float, help="CSV sampling rate in Hz")
    p.add_argument("--column", help="CSV column: header name or 0-based index (default 0)")
    p.add_argument("--beats", choices=["detect", "annotations"], default="detect",
                   help="R peaks found by the detector (default) or taken from the record's .atr")
    p.add_argument("--normalise", choices=["record", "running"],
                   help="amplitude: mean R height of the whole record (stage 1; batch default) or of the last "
                        "300 s (causal; the --stream default and only choice)")
    det = p.add_argument_group("QRS detector (jetson/qrs.py; defaults chosen on DS1, bench/bench_detection.py)")
    det.add_argument("--qrs-threshold", type=float, default=qrs.THRESHOLD, metavar="F",
                     help="a QRS is a candidate above noise + F x (QRS level - noise level) (0 < F < 1)")
    det.add_argument("--qrs-searchback", type=float, default=qrs.SEARCHBACK_RR, metavar="RR",
                     help="no QRS for RR x the mean RR: take the best candidate above half the threshold")
    det.add_argument("--qrs-refractory-s", type=float, default=qrs.REFRACTORY_S, metavar="S",
                     help="no second QRS within S seconds")
    det.add_argument("--qrs-t-wave-s", type=float, default=qrs.T_WAVE_S, metavar="S",
                     help="within S seconds of a QRS, a candidate with under half its slope is a T wave")
    p.add_argument("--stream", action="store_true", help="process the input in chunks as it arrives")
    p.add_argument("--block-s", type=float, default=300.0, metavar="S",
                   help="batch mode: work through the signal in blocks of S seconds, so memory is bounded by "
                        "the block, not the recording (the labels are those of the whole signal at once); "
                        "0 = the whole signal at once")
    p.add_argument("--realtime", type=float, nargs="?", const=1.0, metavar="SPEED",
                   help="with --stream: read the input at real-time pace (times SPEED)")
    p.add_argument("--chunk-s", type=float, default=0.25, help="--stream chunk length in seconds")
    p.add_argument("--no-overlap", action="store_true",
                   help="--stream without --realtime runs the scalograms and the model (ONNX Runtime) in a second "
                        "process beside the beat engine (overlap.py: the same labels, ~1.5x the speed on two "
                        "cores, each label out a few chunks later); this keeps them in one process")
    p.add_argument("--score", action="store_true", help="EC57 detection and per-class scores against the .atr")
    p.add_argument("--operator", default="cwt_operator.npz", help="CWT operator file from 7_AIMET_onnx.py")
    p.add_argument("--out", default="beats.csv", help="CSV of per-beat labels (--record, --csv, --edf)")
    p.add_argument("--out-dir", default="scores", help="folder of the per-record CSV and JSON files (--records)")
    p.add_argument("--plot", action="store_true",
                   help="PNG strips of the signal, every beat's label on it: <out>_strips/ (needs matplotlib)")
    p.add_argument("--report", metavar="DIR", help="an HTML report of the record in DIR: summary, scores, strips, "
                                                   "misclassified and low-confidence beats (needs matplotlib)")
    p.add_argument("--gallery", type=int, default=8, metavar="N",
                   help="--report: beats shown per (reference, predicted) pair and of low confidence (default 8)")
    p.add_argument("--low-confidence", type=float, default=0.6, metavar="P",
                   help="--report: beats below this softmax probability are shown as doubtful (default 0.6)")
    p.add_argument("--holter", action="store_true",
                   help="a Holter summary (beats per class, burden, runs, heart rate, pauses, trends) in "
                        "<out>.holter.json, and a section of the --report page")
    q = p.add_argument_group("signal quality", "--quality: a beat whose signal is unreadable is labelled U (no "
                                               "class) instead of getting the model's label; the CSV gets a quality "
                                               "column (unreadable below 0.5). Rule and thresholds: jetson/quality.py")
    q.add_argument("--quality", action="store_true", help="judge every beat's signal quality (off by default)")
    q.add_argument("--quality-template", type=float, metavar="R",
                   help="tSQI: a beat whose correlation with each of the 32 beats before it is below R is unreadable "
                        "where the two QRS detectors disagree (default 0.75)")
    q.add_argument("--quality-agreement", type=float, metavar="S",
                   help="bSQI: the detectors disagree where the second finds no QRS near the beat or their agreement "
                        "over its 10 s window is below S (default 1: any disagreement)")
    q.add_argument("--quality-kurtosis", type=float, metavar="K",
                   help="a window whose kurtosis (kSQI) is below K is unreadable: no ECG in it (default 3; 0: off)")
    q.add_argument("--quality-power", type=float, metavar="P",
                   help="a window with less than P of its 5-40 Hz power in 5-15 Hz (pSQI) is unreadable "
                        "(default 0: off)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=200, help="batch-1 runs for the latency percentiles")
    return p


def check_args(args):
    """Flag combinations that cannot work, refused before any work (a late failure would lose it all)."""
    if args.stream and args.normalise == "record":
        raise DeviceError("--stream normalises by the running mean R height (--normalise running): the whole "
                          "record's mean is not known while it streams")
    if args.stream and args.beats == "annotations":
        raise DeviceError("--beats annotations is for whole records, not --stream")
    if args.block_s < 0:
        raise DeviceError("--block-s must be 0 (the whole signal at once) or more")
    if args.realtime is not None and (not args.stream or args.realtime <= 0):
        raise DeviceError("--realtime needs --stream and a positive speed")
    if args.csv and args.beats == "annotations":
        raise DeviceError("{}: a CSV has no annotations: use --beats detect".format(args.csv))
    if args.csv and args.score:
        raise DeviceError("{}: --score needs a WFDB record with .atr annotations".format(args.csv))
    if args.edf:
        check_edf_args(args)
    if args.holter and not (args.record or args.csv or args.edf):
        raise DeviceError("--holter summarises one recording: give --record, --csv or --edf")
    if args.plot or args.report:
        if args.images:
            raise DeviceError("--plot and --report show ECG signals: give --record, --csv, --edf or --records")
        if args.records and args.report:
            raise DeviceError("--report is one record's page: give --record (--records takes --plot)")
        if args.gallery < 0:
            raise DeviceError("--gallery must be 0 or more")
        try:
            report.pyplot()
            for folder in ([args.report] if args.report else []) + (
                    [strips_folder(args.out)] if args.plot and not args.records else []):
                report.check_folder(folder)
        except report.ReportError as e:
            raise DeviceError(str(e))
    check_quality_args(args)
    if args.out:
        if os.path.isdir(args.out):
            raise DeviceError("{}: is a folder; --out takes the name of the CSV file to write".format(args.out))
        if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
            raise DeviceError("{}: the folder for --out does not exist".format(
                os.path.dirname(os.path.abspath(args.out))))


def detector_settings(args):
    try:
        return qrs.Settings(args.qrs_threshold, args.qrs_searchback, args.qrs_refractory_s, args.qrs_t_wave_s)
    except ValueError as e:
        raise DeviceError("--qrs-*: {}".format(e))


def check_edf_args(args):
    """--edf: no annotations are read from it (no --score, --beats annotations), its rate and lead
    come from the file; the file, its header and the lead are checked here, before the model loads."""
    if args.beats == "annotations" or args.score:
        raise DeviceError("{}: {} needs a WFDB record's .atr annotations; EDF+ annotations are not read: "
                          "use --beats detect, without --score".format(
                              args.edf, "--score" if args.score else "--beats annotations"))
    if args.fs is not None or args.column is not None:
        raise DeviceError("{}: --fs and --column are for CSV input: an EDF file gives its own rate, and its "
                          "lead is chosen with --lead".format(args.edf))
    edf_input.check_edf(args.edf, args.lead)


def check_quality_args(args):
    tuned = [n for n in ("template", "agreement", "kurtosis", "power") if getattr(args, "quality_" + n) is not None]
    if tuned and not args.quality:
        raise DeviceError("--quality-{} sets a threshold of the quality gate: add --quality".format(tuned[0]))
    if args.quality:
        if args.images:
            raise DeviceError("--quality judges ECG signals: give --record, --csv, --edf or --records")
        quality_gate.check_thresholds(quality_gate.thresholds_from(args))


@main_guard
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    check_args(args)
    detector_settings(args)   # bad detector settings are refused before the model loads
    run = open_runner(args.backend, args.engine, args.onnx, args.stream)
    if args.images:
        classify_folder(run, args.images, args.batch, args.repeats)
        return
    op = scalograms.load_operator(args.operator)
    source = Source(args.record, args.csv, args.fs, args.column, args.lead, args.stream, args.chunk_s, args.realtime,
                    args.edf)
    opts = LabelOptions(args.beats, args.normalise, args.stream, args.batch, args.block_s, detector_settings(args),
                        args.quality, quality_gate.thresholds_from(args) if args.quality else None,
                        overlap=args.stream and args.realtime is None and not args.no_overlap and not args.records)
    pictures = Pictures(args.plot, args.report, args.gallery, args.low_confidence,
                        args.engine if args.backend == "tensorrt" else args.onnx, args.backend)
    if args.records:
        score_folder(run, op, args.records[0], args.records[1:], source, opts, args.out_dir, pictures)
    else:
        classify_input(run, op, source, opts, args.out, args.score, pictures, args.holter)


if __name__ == "__main__":
    main()
