"""Classify heartbeats on the device with a TensorRT engine (or an ONNX file via ONNX Runtime).

    python3 infer_trt.py --engine ecg_fp16.engine --images test_images
    python3 infer_trt.py --engine ecg_fp16.engine --record mitdb/207 --operator cwt_operator.npz
    python3 infer_trt.py --backend onnxruntime --onnx ecg_model_float.onnx --images test_images

--images: a folder laid out like test_images/<class>/*.png -> accuracy, confusion matrix,
per-class F1, latency p50/p90/p99 at batch 1 and throughput at --batch.
--record: a WFDB record (with its .atr beat annotations) -> the stage-1 preprocessing here, one
label per beat in a CSV (--out), beats/s and the real-time factor.
--plot / --report DIR (record or CSV input, needs matplotlib): PNG strips of the signal with every
beat's label, and one HTML page with the summary, the strips and the beats to look at (report.py).
"""
import argparse
import csv
import itertools
import os
import sys
import time

import numpy as np

import report
from common import (DeviceError, check_engine_meta, check_rr_features, engine_meta_path, import_tensorrt, main_guard,
                    onnx_classes, onnx_rr_features, read_json, trt_major, write_json_atomic)


RR_INPUT = "rr"   # the second input of models with per-beat features (RR, morphology): (N, width) float32


def rr_or_error(rr, features):
    """The feature input as the model takes it; `features` = the names the model takes (None: none)."""
    if features and rr is None:
        raise DeviceError("the model takes per-beat RR/morphology features (input '{}'), which a folder of images "
                          "does not have: classify a record or CSV instead".format(RR_INPUT))
    if features and (np.ndim(rr) != 2 or np.shape(rr)[1] != len(features)):
        raise DeviceError("features of shape {}: the model's input '{}' takes (beats, {})".format(
            np.shape(rr), RR_INPUT, len(features)))
    return np.ascontiguousarray(rr, dtype=np.float32) if features else None


class OrtRunner:
    def __init__(self, path):
        try:
            import onnxruntime as ort
        except ImportError:
            raise DeviceError("--backend onnxruntime needs the onnxruntime package")
        if not os.path.isfile(path):
            raise DeviceError("{}: ONNX file not found".format(path))
        try:
            self.sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise DeviceError("{}: not a loadable ONNX model ({})".format(path, str(e).splitlines()[0][:200]))
        inputs = self.sess.get_inputs()
        image = [i for i in inputs if i.name != RR_INPUT][0]
        self.input, self.shape = image.name, tuple(image.shape[1:])
        self.takes_rr = any(i.name == RR_INPUT for i in inputs)
        self.features = None   # the per-beat feature names the model takes, in order
        if self.takes_rr:
            width = [i.shape[1] for i in inputs if i.name == RR_INPUT][0]
            self.features = check_rr_features(onnx_rr_features(path), width if isinstance(width, int) else None,
                                              path)
        self.classes = onnx_classes(path)

    def __call__(self, x, rr=None):
        feed = {self.input: x}
        if self.takes_rr:
            feed[RR_INPUT] = rr_or_error(rr, self.features)
        return self.sess.run(None, feed)[0]


class TrtRunner:
    """One engine, one execution context, device buffers sized for the largest batch seen.
    TensorRT 8.x runs by binding index (execute_async_v2), 10+ by tensor name (execute_async_v3)."""

    def __init__(self, path):
        if not os.path.isfile(path):
            raise DeviceError("{}: engine file not found (build it with build_engine.py)".format(path))
        meta_path = engine_meta_path(path)
        if not os.path.isfile(meta_path):
            raise DeviceError("{}: missing (written by build_engine.py beside the engine)".format(meta_path))
        meta = read_json(meta_path)
        trt = import_tensorrt()
        import pycuda.autoinit  # noqa: F401
        import pycuda.driver as cuda
        check_engine_meta(meta, trt.__version__, cuda.Device(0).name(), path)
        self.trt, self.cuda, self.new_api = trt, cuda, trt_major(trt) >= 10
        logger = trt.Logger(trt.Logger.WARNING)
        with open(path, "rb") as f:
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise DeviceError("{}: TensorRT could not load this engine (corrupt, or built for another TensorRT "
                              "version or GPU): rebuild it here with build_engine.py".format(path))
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        # I/O by name: the image input, the optional RR input, one output
        if self.new_api:
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        else:
            names = [self.engine.get_binding_name(i) for i in range(self.engine.num_bindings)]
            inputs = [n for i, n in enumerate(names) if self.engine.binding_is_input(i)]
        self.names = names
        self.in_name = [n for n in inputs if n != RR_INPUT][0]
        self.out_name = [n for n in names if n not in inputs][0]
        self.takes_rr = RR_INPUT in inputs
        self.features = check_rr_features(meta.get("rr_features"), None, path) if self.takes_rr else None
        self.shape = tuple(meta["input"])
        self.classes = meta.get("classes")
        self.capacity, self.max_batch = 0, meta["max_batch"]

    def _buffers(self, batch, n_out):
        if batch > self.capacity:
            self.dev = {self.in_name: self.cuda.mem_alloc(batch * int(np.prod(self.shape)) * 4),
                        self.out_name: self.cuda.mem_alloc(batch * n_out * 4)}
            if self.takes_rr:
                self.dev[RR_INPUT] = self.cuda.mem_alloc(batch * len(self.features) * 4)
            self.capacity = batch

    def __call__(self, x, rr=None):
        rr = rr_or_error(rr, self.features)
        outs = [self._run(np.ascontiguousarray(x[i:i + self.max_batch], dtype=np.float32),
                          None if rr is None else rr[i:i + self.max_batch])
                for i in range(0, len(x), self.max_batch)]
        return np.concatenate(outs)

    def _run(self, x, rr):
        feeds = [(self.in_name, x)] + ([(RR_INPUT, rr)] if rr is not None else [])
        for name, arr in feeds:
            if self.new_api:
                self.context.set_input_shape(name, arr.shape)
            else:
                self.context.set_binding_shape(self.names.index(name), arr.shape)
        if self.new_api:
            out_shape = tuple(self.context.get_tensor_shape(self.out_name))
        else:
            out_shape = tuple(self.context.get_binding_shape(self.names.index(self.out_name)))
        out = np.empty(out_shape, np.float32)
        self._buffers(len(x), out_shape[1])
        for name, arr in feeds:
            self.cuda.memcpy_htod_async(self.dev[name], arr, self.stream)
        if self.new_api:
            for name, mem in self.dev.items():
                self.context.set_tensor_address(name, int(mem))
            self.context.execute_async_v3(self.stream.handle)
        else:
            self.context.execute_async_v2([int(self.dev[n]) for n in self.names], self.stream.handle)
        self.cuda.memcpy_dtoh_async(out, self.dev[self.out_name], self.stream)
        self.stream.synchronize()
        return out


def class_key(name):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def load_folder(root, shape):
    """uint8 images and folder labels of root/<class>/*.png; wrong sizes are errors."""
    import cv2

    if not os.path.isdir(root):
        raise DeviceError("{}: image folder not found".format(root))
    folders = sorted([d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))], key=class_key)
    images, labels = [], []
    for cls in folders:
        for name in sorted(os.listdir(os.path.join(root, cls))):
            if not name.endswith(".png"):
                continue
            path = os.path.join(root, cls, name)
            img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise DeviceError("{}: not a readable PNG".format(path))
            if img.shape != tuple(shape[1:]):
                raise DeviceError("{}: image is {}x{}, the model takes {}x{}".format(
                    path, img.shape[1], img.shape[0], shape[2], shape[1]))
            images.append(img)
            labels.append(cls)
    if not images:
        raise DeviceError("{}: no PNG images in <class>/ folders".format(root))
    return np.stack(images), labels


def to_input(u8):
    """uint8 images (B, H, W), or (B, C, H, W) with the template channel, as the model's float input
    (B, C, H, W): x / 255 as ToTensor."""
    x = u8.astype(np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else x


def metrics(y, pred, n):
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y, pred), 1)
    tp = np.diag(cm).astype(float)
    f1 = np.where(cm.sum(0) + cm.sum(1) > 0, 2 * tp / np.maximum(cm.sum(0) + cm.sum(1), 1), 0.0)
    return cm, float(tp.sum() / cm.sum()), f1


def timing(run, x, batch, repeats):
    one = x[:1]
    for _ in range(5):
        run(one)
    lat = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(one)
        lat.append((time.perf_counter() - t0) * 1000)
    big = np.repeat(x[:1], batch, axis=0) if len(x) < batch else x[:batch]
    run(big)
    t0 = time.perf_counter()
    reps = max(3, repeats // 20)
    for _ in range(reps):
        run(big)
    return np.percentile(lat, [50, 90, 99]), batch * reps / (time.perf_counter() - t0)


def classify_folder(run, classes, root, batch, repeats):
    rr_or_error(None, run.features)
    if tuple(run.shape)[0] != 1:
        raise DeviceError("the model takes {} image channels (the beat and the patient's running template), which a "
                          "folder of single images does not have: classify a record or CSV instead".format(
                              tuple(run.shape)[0]))
    u8, folder_labels = load_folder(root, run.shape)
    classes = classes or sorted(set(folder_labels), key=class_key)
    unknown = sorted(set(folder_labels) - set(classes), key=class_key)
    if unknown:
        raise DeviceError("{}: class folders {} are not among the model's classes {}".format(root, unknown, classes))
    y = np.array([classes.index(c) for c in folder_labels])
    x = to_input(u8)
    pred = np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)]).argmax(1)
    cm, acc, f1 = metrics(y, pred, len(classes))
    (p50, p90, p99), ips = timing(run, x, batch, repeats)
    print("images     {}  accuracy {:.4f}  macro F1 {:.4f}".format(len(y), acc, f1.mean()))
    print("confusion matrix (rows: true, columns: predicted)")
    print("        " + "".join("{:>8}".format(c) for c in classes))
    for c, row in zip(classes, cm):
        print("{:>8}".format(c) + "".join("{:>8d}".format(v) for v in row))
    print("F1       " + "  ".join("{}: {:.4f}".format(c, v) for c, v in zip(classes, f1)))
    print("latency    batch 1: p50 {:.2f} ms, p90 {:.2f} ms, p99 {:.2f} ms".format(p50, p90, p99))
    print("throughput batch {}: {:.1f} images/s".format(batch, ips))
    return acc


def softmax_classifier(run, batch):
    """images (B, H, W) uint8 and RR features (B, 7) -> (label index, softmax probability)."""
    def classify(u8, rr):
        x = to_input(u8)
        logits = np.concatenate([run(x[i:i + batch], None if rr is None else rr[i:i + batch])
                                 for i in range(0, len(x), batch)]) if len(x) else np.zeros((0, 1))
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = z / z.sum(axis=1, keepdims=True)
        return p.argmax(1), p.max(1)
    return classify


def json_beside(csv_path):
    base = csv_path[:-4] if csv_path.endswith(".csv") else csv_path
    return base + ".score.json"


class BeatWriter(object):
    """The per-beat CSV, written row by row to a temp file and renamed when complete."""

    def __init__(self, path, names, fs_in, with_reference, echo):
        self.path, self.tmp, self.names, self.fs_in, self.echo = path, path + ".tmp", names, fs_in, echo
        self.f = open(self.tmp, "w")
        self.w = csv.writer(self.f, lineterminator="\n")
        self.header = ["sample", "time_s", "predicted", "confidence"] + (
            ["reference", "annotation"] if with_reference else [])
        self.w.writerow(self.header)
        if echo:
            print(",".join(self.header))
        self.rows = 0

    def row(self, sample, label, conf, ref=None):
        r = [sample, "{:.4f}".format(sample / self.fs_in), self.names[label], "{:.4f}".format(conf)]
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


def engine_options(run):
    """What the model takes besides the beat's image, as BeatEngine options: the morphology
    features (after the RR features) and the running template's image as a second channel."""
    import morphology

    features = getattr(run, "features", None) or []
    return {"morphology": morphology.FEATURES[0] in features, "template_channel": tuple(run.shape)[0] == 2}


def model_classes(run):
    return run.classes or [str(i) for i in range(4)]


def label_signal(run, op, sig, chunks, args, out_csv, score, log=None):
    """Classify one lead (a Signal; `chunks` yields (samples, arrival time) in --stream mode).
    Returns (detection counts or None, Confusion or None, report dict); `log` (a report.BeatLog)
    also gets the signal and every labelled beat, for --plot / --report."""
    import scoring
    import streaming
    from rr_features import beat_peaks

    classes = model_classes(run)
    fs_model = float(op["fs"])
    has_ann = sig.ann_samples is not None
    if score and not has_ann:
        raise DeviceError("{}: --score needs the record's .atr annotations".format(sig.name))
    if args.beats == "annotations" and not has_ann:
        raise DeviceError("{}: --beats annotations needs the record's .atr annotations".format(sig.name))
    given = keep = None
    if args.beats == "annotations":
        samples, symbols = beat_peaks(sig.ann_samples, sig.ann_symbols)
        given = np.round(samples * fs_model / sig.fs).astype(np.int64)
        keep = ~np.isin(symbols, [str(s) for s in op["invalid_symbols"]])
    norm = args.normalise or ("running" if args.stream else "record")
    classify = softmax_classifier(run, args.batch)
    engine = streaming.BeatEngine(op, sig.fs, log.wrap(classify) if log else classify, norm, given, keep,
                                  **engine_options(run))
    matcher = scoring.Matcher(sig.ann_samples, sig.ann_symbols, sig.fs) if has_ann else None
    confusion = scoring.Confusion(classes) if has_ann else None
    writer = BeatWriter(out_csv, classes, sig.fs, has_ann, echo=args.stream)
    n_in, busy, labelled, lat = 0, 0.0, 0, []   # lat: (input peak, samples in at label, wall latency s)
    arrivals = []                                # (last input sample of a chunk, its arrival time)
    ok = False
    try:
        if chunks is None:   # batch: the whole signal is one final chunk
            steps = [((sig.x, time.perf_counter()), True)]
        else:                # stream: each chunk as it comes, then the end of the signal
            steps = itertools.chain(((c, False) for c in chunks), [((np.zeros(0), None), True)])
        for (x, came), last in steps:
            if len(x):
                n_in += len(x)
                arrivals.append((n_in, came))
                if log and chunks is not None:
                    log.signal(x)
            t0 = time.perf_counter()
            beats = engine.push(x, final=last)
            now = time.perf_counter()
            busy += now - t0
            for _, _, sample, label, conf in beats:
                k = matcher.match(sample) if matcher else None
                if label is None:
                    continue
                ref = None
                if matcher:
                    ref = ("", "") if k is None else (scoring.aami(matcher.sym[k]), matcher.sym[k])
                    if k is not None:
                        confusion.add(matcher.sym[k], label)
                writer.row(sample, label, conf, ref)
                if log:
                    log.beat(sample, label, conf, ref[1] if ref else "", reference_class(confusion, ref, classes))
                labelled += 1
                lat.append((sample, n_in, now - next((t for end, t in arrivals if end > sample), now)))
            while len(arrivals) > 1 and lat and arrivals[0][0] <= lat[-1][0]:
                arrivals.pop(0)
        if n_in / sig.fs < (int(op["before"]) + int(op["after"])) / fs_model:
            raise DeviceError("{}: the signal is {:.3f} s long, shorter than one beat window".format(sig.name,
                                                                                             n_in / sig.fs))
        if labelled == 0:
            raise DeviceError("{}: no beats found (a flat signal, or no ECG in it?)".format(sig.name))
        ok = True
    finally:
        writer.close(ok)
    det = matcher.detection() if matcher else None
    if log:
        log.finish(sig.x if chunks is None else None,
                   (matcher.ref[~matcher.used], matcher.sym[~matcher.used]) if matcher else None)
    report = {"beats": labelled, "seconds_of_ecg": n_in / sig.fs, "processing_s": busy,
              "beats_per_s": labelled / busy if busy else None, "realtime_factor": (n_in / sig.fs) / busy,
              "normalisation": norm, "beats_from": args.beats}
    if args.stream:
        peaks = np.asarray([s for s, _, _ in lat])
        got = np.asarray([g for _, g, _ in lat])
        sig_ms = (got - 1 - peaks) / sig.fs * 1000.0
        in_beats = np.searchsorted(peaks, got, side="left") - 1 - np.arange(len(peaks))
        wall_ms = np.asarray([w for _, _, w in lat]) * 1000.0
        report["latency"] = {"signal_ms_p50": float(np.percentile(sig_ms, 50)),
                             "signal_ms_p99": float(np.percentile(sig_ms, 99)),
                             "beats_p50": float(np.percentile(in_beats, 50)),
                             "beats_p99": float(np.percentile(in_beats, 99)),
                             "wall_ms_p50": float(np.percentile(wall_ms, 50)),
                             "wall_ms_p99": float(np.percentile(wall_ms, 99))}
    return det, confusion, report


def reference_class(confusion, ref, classes):
    """The index of a matched reference beat's class among the model's (None: no reference, or a
    symbol outside the model's classes)."""
    if not ref or not ref[1] or confusion is None or confusion.to_class is None:
        return None
    true = confusion.to_class(ref[1])
    return None if true is None else classes.index(true)


def class_letters(classes):
    """What a plot writes for each class: the MIT-BIH symbol of a thesis class (0 -> N, 1 -> L,
    2 -> R, 3 -> V, 4 -> /), an AAMI class's own letter."""
    import scoring

    symbol = {v: k for k, v in scoring.THESIS.items()}
    return [symbol[c] for c in classes] if set(classes) <= set(symbol) else list(classes)


def strips_folder(out_csv):
    return (out_csv[:-4] if out_csv.endswith(".csv") else out_csv) + "_strips"


def new_log(args):
    return report.BeatLog(args.gallery, args.low_confidence) if (args.plot or args.report) else None


def write_pictures(args, run, op, sig, log, summary, out_csv, report_dir=None):
    """--plot: the strips in <out>_strips/; report_dir: the HTML report there. Each folder is
    replaced whole (report.replace_folder)."""
    classes = model_classes(run)
    letters = class_letters(classes)
    model = args.engine if args.backend == "tensorrt" else args.onnx
    name = os.path.basename(sig.name)
    strips = report.strip_pages(log.x, sig.fs, log.beats(), letters, "{}: {}".format(name, os.path.basename(model)),
                                log.missed)
    try:
        if args.plot:
            folder = report.replace_folder(strips_folder(out_csv), {"strip_{:03d}.png".format(k + 1): png
                                                              for k, png in enumerate(strips)})
            print("plots      {} pages -> {}".format(len(strips), folder))
        if report_dir:
            fs_model = float(op["fs"])
            facts = [("input", sig.name), ("model", model), ("backend", args.backend),
                     ("sampling rate (Hz)", "{:g}".format(sig.fs)), ("beats", args.beats),
                     ("processing", "stream, {:g} s chunks".format(args.chunk_s) if args.stream else "whole signal"),
                     ("amplitude normalisation", summary["run"]["normalisation"]),
                     ("per-beat CSV", os.path.basename(out_csv))]
            files = report.device_report(log, sig.fs, classes, letters, summary, "ECG report: {}".format(name),
                                         (int(op["before"]) / fs_model, int(op["after"]) / fs_model), facts, strips)
            folder = report.replace_folder(report_dir, files)
            print("report     -> {}".format(os.path.join(folder, "index.html")))
    except report.ReportError as e:
        raise DeviceError(str(e))


def print_report(sig, out_csv, report):
    print("beats      {} labelled -> {}".format(report["beats"], out_csv))
    print("speed      {:.1f} beats/s, {:.2f} s for {:.0f} s of ECG: {:.0f}x real time".format(
        report["beats_per_s"] or 0, report["processing_s"], report["seconds_of_ecg"], report["realtime_factor"]))
    lat = report.get("latency")
    if lat:
        print("latency    R peak in the input -> label: p50 {:.0f} ms ({:.0f} beats), p99 {:.0f} ms ({:.0f} beats) "
              "of signal; wall clock p50 {:.0f} ms, p99 {:.0f} ms".format(
                  lat["signal_ms_p50"], lat["beats_p50"], lat["signal_ms_p99"], lat["beats_p99"],
                  lat["wall_ms_p50"], lat["wall_ms_p99"]))
        print("sustained  {:.0f}x real time (processing time only)".format(report["realtime_factor"]))


def score_json(det, confusion, report, name):
    return {"record": name, "detection": det, "classification": confusion.summary() if confusion else None,
            "run": report}


def open_input(args, op):
    """(Signal, chunk generator or None) for --record / --csv."""
    import signal_input as si

    window_s = (int(op["before"]) + int(op["after"])) / float(op["fs"])
    if args.record:
        sig = si.read_wfdb(args.record, args.lead)
        si.check_signal(sig.x, sig.fs, sig.name, window_s)
        chunks = si.array_chunks(sig.x, sig.fs, max(int(args.chunk_s * sig.fs), 1), args.realtime) \
            if args.stream else None
        return sig, chunks
    if args.lead is not None:
        raise DeviceError("--lead is for WFDB records; a CSV's lead is chosen with --column")
    si.check_fs(args.fs, args.csv)
    if args.stream:
        chunks = si.csv_chunks(args.csv, args.fs, args.column, max(int(args.chunk_s * args.fs), 1), args.realtime)
        return si.Signal(None, args.fs, args.csv if args.csv != "-" else "<stdin>"), chunks
    sig = si.read_csv(args.csv, args.fs, args.column)
    si.check_signal(sig.x, sig.fs, sig.name, window_s)
    return sig, None


def classify_input(run, op, args):
    sig, chunks = open_input(args, op)
    log = new_log(args)
    det, confusion, run_report = label_signal(run, op, sig, chunks, args, args.out, args.score, log)
    print_report(sig, args.out, run_report)
    summary = score_json(det, confusion, run_report, sig.name)
    if args.score:
        import scoring

        print(scoring.format_score(sig.name, det, confusion.summary()))
        write_json_atomic(json_beside(args.out), summary)
        print("score      -> {}".format(json_beside(args.out)))
    if log:
        write_pictures(args, run, op, sig, log, summary, args.out, args.report)


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


def score_folder(run, op, args):
    """--records DIR [R ...]: every record classified and scored; per-record and gross totals."""
    import scoring

    folder, names = args.records[0], record_list(args.records[0], args.records[1:])
    out_dir = args.out_dir
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    rows, total, gross_conf = [], None, None
    for name in progress(names, "records"):
        args.record = os.path.join(folder, name)
        sig, chunks = open_input(args, op)
        out = os.path.join(out_dir, name + ".csv")
        log = new_log(args)
        det, confusion, report = label_signal(run, op, sig, chunks, args, out, True, log)
        write_json_atomic(json_beside(out), score_json(det, confusion, report, name))
        if log:
            write_pictures(args, run, op, sig, log, score_json(det, confusion, report, name), out)
        rows.append({"record": name, "detection": det, "accuracy": confusion.summary()["accuracy"],
                     "beats": report["beats"], "processing_s": report["processing_s"],
                     "seconds_of_ecg": report["seconds_of_ecg"]})
        total = det if total is None else {k: total[k] + det[k] for k in ("tp", "fn", "fp", "fp_in_vf_excluded")}
        if gross_conf is None:
            gross_conf = confusion
        else:
            gross_conf.merge(confusion)
    gross = scoring.counts(total["tp"], total["fn"], total["fp"], total["fp_in_vf_excluded"])
    secs = sum(r["seconds_of_ecg"] for r in rows)
    busy = sum(r["processing_s"] for r in rows)
    print("{:>8} {:>7} {:>7} {:>6} {:>5} {:>5} {:>9}".format("record", "Se %", "+P %", "TP", "FN", "FP", "accuracy"))
    for r in rows:
        d = r["detection"]
        print("{:>8} {:>7.2f} {:>7.2f} {:>6d} {:>5d} {:>5d} {:>9}".format(
            r["record"], d["se"], d["ppv"], d["tp"], d["fn"], d["fp"],
            "n/a" if r["accuracy"] is None else "{:.4f}".format(r["accuracy"])))
    print(scoring.format_score("gross ({} records)".format(len(rows)), gross, gross_conf.summary()))
    print("speed      {} beats in {:.1f} s: {:.1f} beats/s, {:.0f}x real time".format(
        sum(r["beats"] for r in rows), busy, sum(r["beats"] for r in rows) / busy, secs / busy))
    path = os.path.join(out_dir, "scores.json")
    write_json_atomic(path, {"records": rows, "gross": {"detection": gross,
                                                         "classification": gross_conf.summary()}})
    print("scores     -> {}".format(path))


def progress(items, unit):
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, unit=unit, file=sys.stderr)


@main_guard
def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=["tensorrt", "onnxruntime"], default="tensorrt")
    p.add_argument("--engine", help="TensorRT engine (backend tensorrt)")
    p.add_argument("--onnx", help="ONNX model (backend onnxruntime)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", help="folder of <class>/*.png scalograms")
    what.add_argument("--record", help="WFDB record path without extension")
    what.add_argument("--csv", help="CSV file of one lead, '-' for standard input (needs --fs)")
    what.add_argument("--records", nargs="+", metavar="DIR [R ...]",
                      help="score every record of a folder (or the records named): per-record and gross totals")
    p.add_argument("--lead", help="WFDB lead: name (MLII) or 0-based index (default: the first)")
    p.add_argument("--fs", type=float, help="CSV sampling rate in Hz")
    p.add_argument("--column", help="CSV column: header name or 0-based index (default 0)")
    p.add_argument("--beats", choices=["detect", "annotations"], default="detect",
                   help="R peaks found by the detector (default) or taken from the record's .atr")
    p.add_argument("--normalise", choices=["record", "running"],
                   help="amplitude: mean R height of the whole record (stage 1; batch default) or of the last "
                        "300 s (causal; the --stream default and only choice)")
    p.add_argument("--stream", action="store_true", help="process the input in chunks as it arrives")
    p.add_argument("--realtime", type=float, nargs="?", const=1.0, metavar="SPEED",
                   help="with --stream: read the input at real-time pace (times SPEED)")
    p.add_argument("--chunk-s", type=float, default=0.25, help="--stream chunk length in seconds")
    p.add_argument("--score", action="store_true", help="EC57 detection and per-class scores against the .atr")
    p.add_argument("--operator", default="cwt_operator.npz", help="CWT operator file from 7_AIMET_onnx.py")
    p.add_argument("--out", default="beats.csv", help="CSV of per-beat labels (--record, --csv)")
    p.add_argument("--out-dir", default="scores", help="folder of the per-record CSV and JSON files (--records)")
    p.add_argument("--plot", action="store_true",
                   help="PNG strips of the signal, every beat's label on it: <out>_strips/ (needs matplotlib)")
    p.add_argument("--report", metavar="DIR", help="an HTML report of the record in DIR: summary, scores, strips, "
                                                   "misclassified and low-confidence beats (needs matplotlib)")
    p.add_argument("--gallery", type=int, default=8, metavar="N",
                   help="--report: beats shown per (reference, predicted) pair and of low confidence (default 8)")
    p.add_argument("--low-confidence", type=float, default=0.6, metavar="P",
                   help="--report: beats below this softmax probability are shown as doubtful (default 0.6)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=200, help="batch-1 runs for the latency percentiles")
    args = p.parse_args()
    if args.stream and args.normalise == "record":
        raise DeviceError("--stream normalises by the running mean R height (--normalise running): the whole "
                          "record's mean is not known while it streams")
    if args.stream and args.beats == "annotations":
        raise DeviceError("--beats annotations is for whole records, not --stream")
    if args.realtime is not None and (not args.stream or args.realtime <= 0):
        raise DeviceError("--realtime needs --stream and a positive speed")
    if args.csv and args.beats == "annotations":
        raise DeviceError("{}: a CSV has no annotations: use --beats detect".format(args.csv))
    if args.csv and args.score:
        raise DeviceError("{}: --score needs a WFDB record with .atr annotations".format(args.csv))
    if args.plot or args.report:
        if args.images:
            raise DeviceError("--plot and --report show ECG signals: give --record, --csv or --records")
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
    if getattr(args, "out", None):   # checked before any work: a late failure would lose it all
        if os.path.isdir(args.out):
            raise DeviceError("{}: is a folder; --out takes the name of the CSV file to write".format(args.out))
        if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
            raise DeviceError("{}: the folder for --out does not exist".format(
                os.path.dirname(os.path.abspath(args.out))))
    if args.backend == "tensorrt":
        if not args.engine:
            raise DeviceError("--backend tensorrt needs --engine (or use --backend onnxruntime --onnx FILE)")
        run = TrtRunner(args.engine)
    else:
        if not args.onnx:
            raise DeviceError("--backend onnxruntime needs --onnx FILE")
        run = OrtRunner(args.onnx)
    if args.images:
        classify_folder(run, run.classes, args.images, args.batch, args.repeats)
        return
    import scalograms

    op = scalograms.load_operator(args.operator)
    if args.records:
        score_folder(run, op, args)
    else:
        classify_input(run, op, args)


if __name__ == "__main__":
    main()
