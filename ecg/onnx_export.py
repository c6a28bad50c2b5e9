"""Stage 7: check the exported ONNX files and run them with ONNX Runtime."""
import time
from pathlib import Path

import numpy as np

from .errors import UserError

INPUT, OUTPUT = "input", "logits"


def load_checked(path, size=100):
    """onnx.load + checker + the interface of this pipeline's models; UserError otherwise."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: ONNX file not found (run 6_AIMET_quantization.py first)")
    try:
        m = onnx.load(str(path))
        onnx.checker.check_model(m)
    except Exception as e:
        raise UserError(f"{path}: corrupt or invalid ONNX ({str(e).splitlines()[0][:200]})") from None
    ins = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    if [i.name for i in ins] != [INPUT] or [o.name for o in m.graph.output] != [OUTPUT]:
        raise UserError(f"{path}: not an ONNX model of this pipeline (expects input '{INPUT}', output '{OUTPUT}')")
    dims = [d.dim_value or d.dim_param for d in ins[0].type.tensor_type.shape.dim]
    if dims[1:] != [1, size, size]:
        raise UserError(f"{path}: input shape {dims}, expected [batch, 1, {size}, {size}]")
    return m


def opset(m):
    return next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))


def qdq_check(m):
    """Count Q/DQ nodes and verify each quantized Conv/Gemm has int8 weights with zero point 0."""
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    ops = [n.op_type for n in m.graph.node]
    problems = []
    checked = 0
    for node in m.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        dq = producers.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            problems.append(f"{node.name}: weight is not dequantized from int8")
            continue
        w = inits.get(dq.input[0])
        if w is None:  # weight quantized at run time: Q of a float initializer
            q = producers.get(dq.input[0])
            zp_name = q.input[2] if q is not None and len(q.input) > 2 else None
            w_type = inits[zp_name].data_type if zp_name in inits else None
        else:
            zp_name = dq.input[2] if len(dq.input) > 2 else None
            w_type = w.data_type
        if w_type != TensorProto.INT8:
            problems.append(f"{node.name}: weight type is not int8")
        if zp_name and zp_name in inits and np.any(numpy_helper.to_array(inits[zp_name]) != 0):
            problems.append(f"{node.name}: weight zero point is not 0")
        checked += 1
    act_zp_nonzero = 0
    for node in m.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in inits:
            zp = inits[node.input[2]]
            if zp.data_type != TensorProto.INT8 or np.any(numpy_helper.to_array(zp) != 0):
                act_zp_nonzero += 1
    if act_zp_nonzero:
        problems.append(f"{act_zp_nonzero} QuantizeLinear nodes are not symmetric int8 (zero point 0)")
    return {"quantize_linear": ops.count("QuantizeLinear"), "dequantize_linear": ops.count("DequantizeLinear"),
            "quantized_conv_gemm": checked, "problems": problems}


def session(path, optimize=True, threads=0):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if threads:
        so.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise UserError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]})") from None


def run_all(sess, images, batch_size=256):
    """Logits for a (N, 1, H, W) float32 array."""
    outs = [sess.run([OUTPUT], {INPUT: images[i:i + batch_size]})[0] for i in range(0, len(images), batch_size)]
    return np.concatenate(outs)


def latency(sess, image, repeats=30):
    out = {}
    for bs in (1, 64):
        x = np.repeat(image[None], bs, axis=0).astype(np.float32)
        for _ in range(3):
            sess.run([OUTPUT], {INPUT: x})
        times = []
        for _ in range(repeats if bs == 1 else max(5, repeats // 5)):
            t0 = time.perf_counter()
            sess.run([OUTPUT], {INPUT: x})
            times.append(time.perf_counter() - t0)
        out[f"batch{bs}_ms"] = float(np.median(times) * 1000)
    return out
