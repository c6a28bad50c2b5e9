"""Will TensorRT 8.2's ONNX parser take this file? A check without TensorRT (onnx + numpy only).

No machine of this project has TensorRT, so every exported ONNX is held to the documented rules
of the oldest TensorRT the device path supports (8.2, JetPack 4.6 on the Jetson Nano):

- op: every node's operator is in TensorRT 8.2's ONNX support matrix (`TRT82_OPS`), in the
  default ONNX domain;
- opset: the default-domain opset is <= 13 (the 8.2 parser's limit);
- conv-weights: Conv/ConvTranspose weights come from an initializer, or from a
  DequantizeLinear of one (directly or through a QuantizeLinear);
- qdq-inputs / qdq-scale / qdq-zero-point: QuantizeLinear and DequantizeLinear have three
  inputs, constant positive finite scales and int8 zero points that are all zero;
- int8-weights: an INT8 initializer feeding DequantizeLinear is TensorRT 10's weight-only form;
  TensorRT 8.x wants float weights -> QuantizeLinear -> DequantizeLinear (the 8.0-8.5 parsers
  stop with "invalid weights type of Int8");
- per-channel: scales with more than one element only on weights, along axis 0, one scale
  per output channel (Conv, or Gemm with transB=1);
- dynamic-shape: graph inputs and outputs have a shape whose only dynamic dimension is the
  first (batch);
- int64: TensorRT 8.2 has no INT64 tensors and casts INT64 constants down to INT32, so an INT64
  constant outside the INT32 range, or an INT64 graph input/output, is refused.

Subgraphs (If/Loop/Scan bodies) are not inspected; this pipeline's models have none.
"""
from collections import Counter, namedtuple

import numpy as np

from .errors import UserError

# The operators marked supported in TensorRT 8.2's ONNX support matrix: onnx/onnx-tensorrt,
# tag 8.2-GA, docs/operators.md (129 operators, copied verbatim).
TRT82_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
GRU HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu Less LessOrEqual
Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean Min Mul Neg
NonMaxSuppression Not Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomUniform
RandomUniformLike Range ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice
Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
TopK Transpose Unsqueeze Upsample Where
""".split())
MAX_OPSET = 13
DEFAULT_DOMAINS = ("", "ai.onnx")
QDQ = ("QuantizeLinear", "DequantizeLinear")


class Violation(namedtuple("Violation", "where rule detail")):
    def __str__(self):
        return f"{self.where}: {self.rule}: {self.detail}"


def violations(m, allow_int8_weights=False):
    """Every rule `m` (an onnx.ModelProto) breaks, as Violations; [] when TensorRT 8.2 takes it.

    allow_int8_weights: accept INT8 initializers into DequantizeLinear (TensorRT >= 10's form).
    """
    g = m.graph
    consts = _constants(g)
    producer = {o: n for n in g.node for o in n.output if o}
    consumers = {}
    for n in g.node:
        for k, name in enumerate(n.input):
            consumers.setdefault(name, []).append((n, k))
    out = []
    for o in m.opset_import:
        if o.domain in DEFAULT_DOMAINS and o.version > MAX_OPSET:
            out.append(Violation("model", "opset", f"opset {o.version}; TensorRT 8.2's parser takes <= {MAX_OPSET}"))
    out += _io_violations(g, {t.name for t in g.initializer})
    out += _int64_violations(g, consts, consumers)
    for i, node in enumerate(g.node):
        where = f"node '{node.name or f'#{i}'}' ({node.op_type})"
        if node.domain not in DEFAULT_DOMAINS or node.op_type not in TRT82_OPS:
            domain = f" (domain '{node.domain}')" if node.domain not in DEFAULT_DOMAINS else ""
            out.append(Violation(where, "op", f"{node.op_type}{domain} is not in TensorRT 8.2's ONNX support matrix"))
            continue
        if node.op_type in ("Conv", "ConvTranspose") and not _is_weight(node.input[1], consts, producer):
            out.append(Violation(where, "conv-weights", f"weight '{node.input[1]}' is neither an initializer nor a "
                                                        "DequantizeLinear of one"))
        if node.op_type in QDQ:
            out += _qdq_violations(node, where, consts, producer, consumers, allow_int8_weights)
    return out


def check(m, path, allow_int8_weights=False):
    """UserError naming the file and, for each broken rule, how often and the first node that
    breaks it, when TensorRT 8.2 would refuse `m`."""
    found = violations(m, allow_int8_weights)
    if found:
        who = "TensorRT >= 10 (8.2's rules, INT8-stored weights allowed)" if allow_int8_weights else "TensorRT 8.2"
        raise UserError(f"{path}: {who} would not parse it: {summarize(found)}")


def verdict(m, allow_int8_weights=False):
    """One line for a report: 'ok', or 'no: ' and the violations summarized."""
    found = violations(m, allow_int8_weights)
    return f"no: {summarize(found)}" if found else "ok"


def summarize(found):
    """Violations grouped by rule: '<n> <rule> violation(s), first: <violation>; ...'."""
    first = {}
    for v in found:
        first.setdefault(v.rule, v)
    counts = Counter(v.rule for v in found)
    return "; ".join(f"{counts[rule]} {rule} violation{'s' * (counts[rule] > 1)}, first: {v}"
                     for rule, v in first.items())


def _constants(g):
    """name -> numpy array for initializers and Constant node outputs."""
    from onnx import helper, numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.domain in DEFAULT_DOMAINS and n.attribute:
            a = n.attribute[0]
            value = helper.get_attribute_value(a)
            consts[n.output[0]] = numpy_helper.to_array(value) if a.name == "value" else np.asarray(value)
    return consts


def _weight_root(name, consts, producer):
    """The constant a Q/DQ chain starts from (name itself, or the input of the QuantizeLinear
    that produces it), or None when it quantizes an activation."""
    if name in consts:
        return name
    q = producer.get(name)
    if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in consts:
        return q.input[0]
    return None


def _is_weight(name, consts, producer):
    if name in consts:
        return True
    dq = producer.get(name)
    return (dq is not None and dq.op_type == "DequantizeLinear"
            and _weight_root(dq.input[0], consts, producer) is not None)


def _qdq_violations(node, where, consts, producer, consumers, allow_int8_weights):
    out = []
    if len(node.input) != 3 or not all(node.input):
        return [Violation(where, "qdq-inputs", f"{len(node.input)} inputs; TensorRT 8.2 needs x, scale and an "
                                               "explicit zero point (three inputs)")]
    x, scale_name, zp_name = node.input
    scale, zp = consts.get(scale_name), consts.get(zp_name)
    if scale is None:
        out.append(Violation(where, "qdq-scale", f"scale '{scale_name}' is not a constant"))
    elif not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        out.append(Violation(where, "qdq-scale", f"scale '{scale_name}' has values that are not positive and finite"))
    if zp is None:
        out.append(Violation(where, "qdq-zero-point", f"zero point '{zp_name}' is not a constant"))
    elif zp.dtype != np.int8 or np.any(zp != 0):
        out.append(Violation(where, "qdq-zero-point", f"zero point '{zp_name}' is {zp.dtype} with values "
                                                      f"{np.unique(zp)[:4].tolist()}; TensorRT needs int8 zeros"))
    if node.op_type == "DequantizeLinear" and x in consts and consts[x].dtype == np.int8 and not allow_int8_weights:
        out.append(Violation(where, "int8-weights", f"INT8 constant '{x}' feeds DequantizeLinear (TensorRT 10's "
                                                    "weight-only form); TensorRT 8.x needs float weights -> "
                                                    "QuantizeLinear -> DequantizeLinear"))
    if scale is not None and scale.size > 1:
        out += _per_channel_violations(node, where, scale, consts, producer, consumers)
    return out


def _per_channel_violations(node, where, scale, consts, producer, consumers):
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)  # ONNX's default axis is 1
    root = _weight_root(node.input[0], consts, producer)
    if root is None:
        return [Violation(where, "per-channel", f"{scale.size} scales on an activation; TensorRT 8.2 takes "
                                                "per-channel scales on weights only")]
    w = consts[root]
    out = []
    if axis != 0:
        out.append(Violation(where, "per-channel", f"axis {axis}; TensorRT 8.2 takes per-channel scales along "
                                                   "axis 0 (output channels, weights KCRS) only"))
    elif w.ndim == 0 or scale.size != w.shape[0]:
        out.append(Violation(where, "per-channel", f"{scale.size} scales for weight '{root}' of shape "
                                                   f"{list(w.shape)}; needs one per output channel"))
    if node.op_type == "DequantizeLinear":
        for user, k in consumers.get(node.output[0], []):
            per_output = k == 1 and (user.op_type == "Conv" or user.op_type == "Gemm" and any(
                a.name == "transB" and a.i == 1 for a in user.attribute))
            if not per_output:
                out.append(Violation(where, "per-channel", f"feeds input {k} of {user.op_type} '{user.name}', where "
                                                           "axis 0 is not the output channel"))
    return out


def _io_violations(g, init_names):
    from onnx import TensorProto

    out = []
    for kind, values in (("input", [v for v in g.input if v.name not in init_names]), ("output", g.output)):
        for v in values:
            where = f"graph {kind} '{v.name}'"
            t = v.type.tensor_type
            if t.elem_type == TensorProto.INT64:
                out.append(Violation(where, "int64", "INT64 network I/O; TensorRT 8.2 has no INT64 tensors"))
            if not t.HasField("shape"):
                out.append(Violation(where, "dynamic-shape", "no shape; only the batch dimension may be dynamic"))
                continue
            for d, dim in enumerate(t.shape.dim[1:], start=1):
                if not dim.HasField("dim_value") or dim.dim_value <= 0:
                    out.append(Violation(where, "dynamic-shape", f"dimension {d} is dynamic "
                                                                 f"('{dim.dim_param or '?'}'); only the batch "
                                                                 "dimension (0) may be"))
    return out


def _int64_violations(g, consts, consumers):
    info = np.iinfo(np.int32)
    out = []
    for name, a in consts.items():
        if a.dtype == np.int64 and a.size and (a.min() < info.min or a.max() > info.max):
            users = ", ".join(f"'{n.name}' ({n.op_type})" for n, _ in consumers.get(name, [])) or "no node"
            out.append(Violation(f"constant '{name}'", "int64", f"INT64 values outside the INT32 range (used by "
                                                                f"{users}); TensorRT 8.2 casts INT64 to INT32"))
    return out
