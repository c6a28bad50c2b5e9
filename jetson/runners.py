"""The model on the device: a TensorRT engine (TrtRunner) or an ONNX file through ONNX Runtime
(OrtRunner), each a callable (images (B, C, H, W) float32, features (B, F) or None) -> logits.
Python 3.6+, numpy; TensorRT/pycuda or onnxruntime imported only by the runner that needs them.
"""
import os

import numpy as np

from .common import (DeviceError, check_engine_meta, check_rr_features, engine_meta_path, import_tensorrt,
                     onnx_classes, onnx_rr_features, read_json, trt_major)

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
    """threads: ONNX Runtime's intra-op threads (None: its default, all cores). A stream classifies
    a beat or two at a time, for which one thread is ~2x faster than several (their hand-offs cost
    more than they share); the logits are the same numbers either way."""

    def __init__(self, path, threads=None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise DeviceError("--backend onnxruntime needs the onnxruntime package")
        if not os.path.isfile(path):
            raise DeviceError("{}: ONNX file not found".format(path))
        self.onnx_path = path   # a second process may load it too (overlap.py)
        try:
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = int(threads)
            self.sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
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


def open_runner(backend, engine=None, onnx=None, stream=False):
    """The runner for --backend, from --engine (tensorrt) or --onnx (onnxruntime); `stream`: the
    model will see a beat or two per call (ONNX Runtime on one thread, see OrtRunner)."""
    if backend == "tensorrt":
        if not engine:
            raise DeviceError("--backend tensorrt needs --engine (or use --backend onnxruntime --onnx FILE)")
        return TrtRunner(engine)
    if not onnx:
        raise DeviceError("--backend onnxruntime needs --onnx FILE")
    return OrtRunner(onnx, threads=1 if stream else None)


def model_classes(run):
    """The model's class names (from its metadata; the thesis model's four indices without it)."""
    return run.classes or [str(i) for i in range(4)]


def to_input(u8):
    """uint8 images (B, H, W), or (B, C, H, W) with the template channel, as the model's float input
    (B, C, H, W): x / 255 as ToTensor."""
    x = u8.astype(np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else x


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
