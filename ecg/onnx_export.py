"""Every ONNX file the pipeline writes (stages 6 and 7), all opset 13, all named alike.

- `export_qdq`: the AIMET simulation as explicit QuantizeLinear/DequantizeLinear. The default,
  float weights -> QuantizeLinear -> DequantizeLinear (per-channel, axis 0), is the form
  TensorRT 8.2 to 11 parse; `int8_weights=True` stores the weights as INT8 initializers into
  DequantizeLinear (~3.5x smaller, TensorRT >= 10 and ONNX Runtime only).
- `export_float`: the batch-norm-folded float model (FP32/FP16 engines).
- `convert_fp16`: that float ONNX with FP16 weights and arithmetic (ONNX Runtime's float16
  converter), float32 inputs and outputs kept.
- `quantize_dynamic_int8`: the thesis' onnxruntime `quantize_dynamic` variant (CPU only).

The two exports get short internal tensor names and the class names in their metadata; the
two conversions of the float ONNX keep both. Inputs: an image-only model takes `input`
(N x 1 x 100 x 100), as it always has; a model with RR features takes `image` (N x 1 x 100 x 100)
and `rr` (N x k raw RR features, seconds and ratios; the model standardises them inside), and its
metadata key `rr_features` holds JSON {"names", "mean", "std"}: which features, in which order,
and the training split's normalisation that the graph applies (for the device and for readers).
"""
import copy
import json

import torch

from . import files

INPUT, OUTPUT = "input", "logits"
IMAGE, RR = "image", "rr"  # the two inputs of a model with RR-interval features
OPSET = 13
RR_KEY = "rr_features"  # metadata key: JSON {"names": [...], "mean": [...], "std": [...]}


def input_names(n_inputs=1):
    """['input'] for the image-only model (unchanged since the thesis), ['image', 'rr'] for RR models."""
    return [INPUT] if n_inputs == 1 else [IMAGE, RR]


def io_names(n_inputs=1):
    """Input/output names and a dynamic batch dimension on each: torch.onnx.export kwargs."""
    names = input_names(n_inputs)
    return {"input_names": names, "output_names": [OUTPUT],
            "dynamic_axes": {name: {0: "batch"} for name in (*names, OUTPUT)}}


def shorten_tensor_names(m):
    """Rename the tensors between nodes to t0, t1, ... in place. The exporter names them after
    the module path ('/features/features.1/features.1.0/block/.../Conv_output_0_q'), and with a
    Q and a DQ node after every activation those strings are ~170 kB of a ~1.4 MB QDQ file.
    Node names, initializer names and the graph's input/output keep their names, so engine
    layer names still point at the layers."""
    keep = {t.name for t in m.graph.initializer} | {v.name for v in m.graph.input} | {v.name for v in m.graph.output}
    new = {}
    for node in m.graph.node:
        for name in node.output:
            if name and name not in keep and name not in new:
                new[name] = f"t{len(new)}"
    for node in m.graph.node:
        for seq in (node.input, node.output):
            for i, name in enumerate(seq):
                seq[i] = new.get(name, name)
    for v in m.graph.value_info:
        v.name = new.get(v.name, v.name)
    return m


def set_metadata(m, key, value):
    """metadata_props[key] = JSON of value (replacing an old entry)."""
    for p in list(m.metadata_props):
        if p.key == key:
            m.metadata_props.remove(p)
    entry = m.metadata_props.add()
    entry.key, entry.value = key, json.dumps(value)
    return m


def set_classes(m, classes):
    """Record the class names in the ONNX metadata (the device reads them from there)."""
    return set_metadata(m, "classes", list(classes))


def rr_metadata(meta):
    """The `rr_features` metadata of a model described by `meta` (model.load's), or None."""
    if not meta.get("rr_features"):
        return None
    return {"names": list(meta["rr_features"]), "mean": list(meta["rr_mean"]), "std": list(meta["rr_std"])}


def _save(path, make, classes, rr=None):
    """make(tmp) writes an ONNX file to tmp; then shorten its names, add the classes (and the RR
    features' names and normalisation, `rr`), and move it into place atomically."""
    import onnx

    def write(tmp):
        make(tmp)
        m = set_classes(shorten_tensor_names(onnx.load(tmp)), classes)
        onnx.save(set_metadata(m, RR_KEY, rr) if rr else m, tmp)

    files.save_with(path, write, suffix=".onnx")


def export_qdq(sim, path, classes, inputs, int8_weights=False, rr=None):
    """The AIMET simulation as a Q/DQ ONNX (int8, zero point 0, the sim's encodings). inputs:
    the model's example inputs (model.example_inputs); rr: rr_metadata of an RR model."""
    from .quantization import import_aimet

    import_aimet()
    from aimet_torch.onnx import export

    model = sim.model.eval()
    _save(path, lambda tmp: export(model, tuple(inputs), tmp, opset_version=OPSET, dynamo=False,
                                   export_int32_bias=False, force_activation_as="signed",
                                   prequantize_constants=int8_weights, **io_names(len(inputs))), classes, rr)


def export_float(net, path, classes, inputs, rr=None):
    """BN-folded float ONNX for FP32/FP16 engines (the Jetson Nano has no INT8). inputs: the
    model's example inputs (model.example_inputs); rr: rr_metadata of an RR model."""
    net = copy.deepcopy(net).eval()
    _save(path, lambda tmp: torch.onnx.export(net, tuple(inputs), tmp, opset_version=OPSET, dynamo=False,
                                              **io_names(len(inputs))), classes, rr)


def convert_fp16(float_path, path):
    """The float ONNX with FP16 weights and arithmetic, inputs and outputs still float32
    (onnxruntime.transformers.float16, keep_io_types=True). Names and metadata carry over. The
    converter appends its input Casts at the end of the node list; the nodes are put back in
    topological order (onnx.checker requires it)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    m = convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True)
    OnnxModel.graph_topological_sort(m.graph, is_deterministic=True)
    files.save_with(path, lambda tmp: onnx.save(m, tmp), suffix=".onnx")


def quantize_dynamic_int8(float_path, path):
    """The thesis' variant: onnxruntime quantize_dynamic (ConvInteger, int8 weights). CPU only;
    TensorRT cannot parse it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    files.save_with(path, lambda tmp: quantize_dynamic(str(float_path), tmp, weight_type=QuantType.QInt8),
                    suffix=".onnx")
