"""Classify heartbeats on the device with a TensorRT engine (or an ONNX file via ONNX Runtime).

    python3 infer_trt.py --engine ecg_fp16.engine --images test_images
    python3 infer_trt.py --engine ecg_fp16.engine --record mitdb/207 --operator cwt_operator.npz
    python3 infer_trt.py --backend onnxruntime --onnx ecg_model_float.onnx --images test_images

--images: a folder laid out like test_images/<class>/*.png -> accuracy, confusion matrix,
per-class F1, latency p50/p90/p99 at batch 1 and throughput at --batch.
--record: a WFDB record (with its .atr beat annotations) -> the stage-1 preprocessing here, one
label per beat in a CSV (--out), beats/s and the real-time factor.
"""
import argparse
import csv
import os
import time

import numpy as np

from common import (DeviceError, check_engine_meta, engine_meta_path, import_tensorrt, main_guard, onnx_classes,
                    read_json, trt_major)


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
        self.input = self.sess.get_inputs()[0].name
        self.shape = tuple(self.sess.get_inputs()[0].shape[1:])
        self.classes = onnx_classes(path)

    def __call__(self, x):
        return self.sess.run(None, {self.input: x})[0]


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
        if self.new_api:
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            self.in_name = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT][0]
            self.out_name = [n for n in names if n != self.in_name][0]
        else:
            self.in_idx = [i for i in range(self.engine.num_bindings) if self.engine.binding_is_input(i)][0]
            self.out_idx = 1 - self.in_idx
        self.shape = tuple(meta["input"])
        self.classes = meta.get("classes")
        self.capacity, self.max_batch = 0, meta["max_batch"]

    def _buffers(self, batch, n_out):
        if batch > self.capacity:
            self.d_in = self.cuda.mem_alloc(batch * int(np.prod(self.shape)) * 4)
            self.d_out = self.cuda.mem_alloc(batch * n_out * 4)
            self.capacity = batch

    def __call__(self, x):
        outs = [self._run(np.ascontiguousarray(x[i:i + self.max_batch], dtype=np.float32))
                for i in range(0, len(x), self.max_batch)]
        return np.concatenate(outs)

    def _run(self, x):
        b = len(x)
        if self.new_api:
            self.context.set_input_shape(self.in_name, x.shape)
            out_shape = tuple(self.context.get_tensor_shape(self.out_name))
        else:
            self.context.set_binding_shape(self.in_idx, x.shape)
            out_shape = tuple(self.context.get_binding_shape(self.out_idx))
        out = np.empty(out_shape, np.float32)
        self._buffers(b, out_shape[1])
        self.cuda.memcpy_htod_async(self.d_in, x, self.stream)
        if self.new_api:
            self.context.set_tensor_address(self.in_name, int(self.d_in))
            self.context.set_tensor_address(self.out_name, int(self.d_out))
            self.context.execute_async_v3(self.stream.handle)
        else:
            bindings = [0, 0]
            bindings[self.in_idx], bindings[self.out_idx] = int(self.d_in), int(self.d_out)
            self.context.execute_async_v2(bindings, self.stream.handle)
        self.cuda.memcpy_dtoh_async(out, self.d_out, self.stream)
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
    return (u8.astype(np.float32) / 255.0)[:, None]  # as ToTensor: x / 255, shape (B, 1, H, W)


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


def classify_record(run, classes, record, operator, out_csv, batch):
    import scalograms

    op = scalograms.load_operator(operator)
    t0 = time.perf_counter()
    x, samples, symbols = scalograms.read_record(record, float(op["fs"]), int(op.get("lead", 0)))
    peaks, syms, windows = scalograms.beats_of_record(x, samples, symbols, op)
    u8 = scalograms.images(windows, op)
    inp = to_input(u8)
    pred = np.concatenate([run(inp[i:i + batch]) for i in range(0, len(inp), batch)]).argmax(1)
    seconds = time.perf_counter() - t0
    names = classes or [str(i) for i in range(int(pred.max()) + 1)]
    tmp = out_csv + ".tmp"
    with open(tmp, "w") as f:
        w = csv.writer(f)
        w.writerow(["sample", "annotation", "predicted"])
        for r, s, k in zip(peaks, syms, pred):
            w.writerow([int(r), s, names[k]])
    os.replace(tmp, out_csv)
    duration = len(x) / float(op["fs"])
    print("beats      {} labelled -> {}".format(len(pred), out_csv))
    print("speed      {:.1f} beats/s, {:.1f} s for {:.0f} s of ECG: {:.0f}x real time".format(
        len(pred) / seconds, seconds, duration, duration / seconds))
    return pred


@main_guard
def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=["tensorrt", "onnxruntime"], default="tensorrt")
    p.add_argument("--engine", help="TensorRT engine (backend tensorrt)")
    p.add_argument("--onnx", help="ONNX model (backend onnxruntime)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", help="folder of <class>/*.png scalograms")
    what.add_argument("--record", help="WFDB record path without extension (needs --operator)")
    p.add_argument("--operator", default="cwt_operator.npz", help="CWT operator file from 7_AIMET_onnx.py")
    p.add_argument("--out", default="beats.csv", help="CSV of per-beat labels (--record)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=200, help="batch-1 runs for the latency percentiles")
    args = p.parse_args()
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
    else:
        classify_record(run, run.classes, args.record, args.operator, args.out, args.batch)


if __name__ == "__main__":
    main()
