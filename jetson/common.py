"""Shared device-side helpers: Python 3.6+, numpy only (no torch, no training code).

Used by build_engine.py and infer_trt.py on the Jetson (JetPack 4.6: Python 3.6, TensorRT 8.2)
and on newer TensorRT (10/11). All TensorRT API differences live here, one function per API.
"""
import json
import os
import sys
import traceback

from . import morphology, rr_features


class DeviceError(Exception):
    """Bad input on the device: printed as one 'error: ...' line, exit status 2."""


def main_guard(fn):
    """A DeviceError becomes one 'error: ...' line and exit status 2; with ECG_DEBUG=1 in the
    environment the full traceback comes first, including the exception it was raised from."""
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DeviceError as e:
            if os.environ.get("ECG_DEBUG", "") not in ("", "0"):
                cause = e
                while cause is not None:  # undo `raise ... from None`: show what lies behind
                    cause.__suppress_context__ = False
                    cause = cause.__cause__ or cause.__context__
                traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
            sys.stderr.write("error: {}\n".format(e))
            sys.exit(2)
    return wrapper


def trt_major(trt):
    return int(trt.__version__.split(".")[0])


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise DeviceError("TensorRT's Python package is not installed here (JetPack ships it; on x86: "
                          "pip install tensorrt); without a GPU use --backend onnxruntime")
    return trt


def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _fields(buf):
    """(field number, wire type, value) of one protobuf message; length-delimited values as bytes."""
    i, n = 0, len(buf)
    while i < n:
        tag, i = _varint(buf, i)
        num, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("unsupported protobuf wire type {}".format(wire))
        yield num, wire, value


def read_onnx_metadata(path):
    """{key: value} of an ONNX file's metadata_props (ModelProto field 14, StringStringEntryProto
    key = 1, value = 2), read with a minimal protobuf walk: no onnx package needed (a Jetson's
    JetPack has none), and the weights are skipped, not decoded."""
    with open(path, "rb") as f:
        buf = f.read()
    out = {}
    try:
        for num, wire, value in _fields(buf):
            if num == 14 and wire == 2:
                entry = dict((k, v) for k, w, v in _fields(value) if w == 2)
                out[entry.get(1, b"").decode("utf-8")] = entry.get(2, b"").decode("utf-8")
    except (IndexError, ValueError, UnicodeDecodeError) as e:
        raise DeviceError("{}: not a readable ONNX file ({})".format(path, e))
    return out


def onnx_metadata(path, key):
    """A JSON value stored in the ONNX metadata by 6_AIMET_quantization.py (or None)."""
    value = read_onnx_metadata(path).get(key)
    return None if value is None else json.loads(value)


def onnx_classes(path):
    """Class names stored in the ONNX metadata by 6_AIMET_quantization.py (or None)."""
    return onnx_metadata(path, "classes")


def onnx_rr_features(path):
    """Names of the RR features a two-input ONNX takes, in order (metadata 'rr_features'), or None."""
    rr = onnx_metadata(path, "rr_features")
    return rr["names"] if rr else None


def feature_sets():
    """The per-beat feature vectors this device computes, each a list of names in input order:
    the RR features alone, or followed by the patient-relative morphology features."""
    return [list(rr_features.FEATURES), list(rr_features.FEATURES) + list(morphology.FEATURES)]


def check_rr_features(names, width, path):
    """A model's feature input ('rr') must take one of the vectors this device computes
    (feature_sets()), in that order: otherwise its input would be fed the wrong numbers.
    Returns the names the device must compute for it."""
    sets = feature_sets()
    if names is not None:
        match = [s for s in sets if s == list(names) and width in (None, len(s))]
    else:
        match = [s for s in sets if len(s) == width] if width is not None else sets[:1]
    if not match:
        raise DeviceError("{}: the model takes features {} ({} values), this device computes {}: "
                          "export the model with this version of the pipeline".format(
                              path, names, width, " or ".join("{} ({})".format(s, len(s)) for s in sets)))
    return match[0]


def engine_meta_path(engine_path):
    return engine_path + ".json"


def check_engine_meta(meta, trt_version, gpu_name, path):
    """An engine only runs with the TensorRT version and GPU model it was built with."""
    if meta.get("tensorrt") != trt_version:
        raise DeviceError("{}: built with TensorRT {}, this is TensorRT {}; rebuild it here with "
                          "build_engine.py".format(path, meta.get("tensorrt"), trt_version))
    if meta.get("gpu") != gpu_name:
        raise DeviceError("{}: built for GPU '{}', this is '{}'; rebuild it here with build_engine.py".format(
            path, meta.get("gpu"), gpu_name))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


PRECISIONS = ("auto", "int8", "fp16", "fp32")


def choose_precision(requested, has_fp16, has_int8, trt_major_version, qdq_onnx, float_onnx):
    """(precision, onnx file) for a request on this GPU, or a DeviceError that says why not.

    auto: INT8 from the QDQ ONNX where the GPU has INT8; else FP16 from the float ONNX (the
    Jetson Nano); else FP32. TensorRT refuses Q/DQ networks on GPUs without INT8, and
    TensorRT 11 builds every network strongly typed (no FP16 flag), so FP16 needs TRT <= 10.
    """
    if requested not in PRECISIONS:
        raise DeviceError("unknown precision '{}' (one of {})".format(requested, ", ".join(PRECISIONS)))
    fp16_ok = has_fp16 and trt_major_version < 11
    if requested == "auto":
        if has_int8 and qdq_onnx:
            requested = "int8"
        elif fp16_ok and float_onnx:
            requested = "fp16"
        else:
            requested = "fp32"
    if requested == "int8":
        if not has_int8:
            raise DeviceError("this GPU has no fast INT8 (e.g. the Jetson Nano's Maxwell GPU) and TensorRT refuses "
                              "Q/DQ networks on it: use --precision fp16 with the float ONNX")
        if not qdq_onnx:
            raise DeviceError("INT8 needs the QDQ ONNX (ecg_model_quantized.onnx); give --qdq-onnx")
        return "int8", qdq_onnx
    if requested == "fp16":
        if not has_fp16:
            raise DeviceError("this GPU has no fast FP16: use --precision fp32")
        if trt_major_version >= 11:
            raise DeviceError("TensorRT {} builds networks strongly typed and has no FP16 flag: use --precision "
                              "int8 (QDQ ONNX) or fp32".format(trt_major_version))
    if not float_onnx:
        raise DeviceError("{} needs the float ONNX (ecg_model_float.onnx); give --float-onnx".format(requested.upper()))
    return requested, float_onnx
