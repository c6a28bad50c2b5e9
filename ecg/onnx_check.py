"""Stage 7: check the exported ONNX files and evaluate them with ONNX Runtime.

`load_checked` (onnx.checker + this pipeline's interface), `qdq_summary` (Q/DQ counts, every
Conv/Gemm weight quantized to int8 with zero point 0), `trt_compat` verdicts, and
`evaluate_variants`: each variant's accuracy, macro F1, argmax agreement with its reference,
size, TensorRT 8.2 verdict and latency, with the agreement rule (`MAX_DISAGREEMENT`).
"""
import json
from collections import namedtuple
from pathlib import Path

import numpy as np
import torch

from . import evaluation, files, trt_compat
from .errors import UserError
from .onnx_export import IMAGE, INPUT, OPSET, OUTPUT, RR, RR_KEY

REQUIREMENTS = {"tensorrt_8_2": False, "tensorrt_10_form": True}  # -> INT8-stored weights allowed
MAX_DISAGREEMENT = 0.005  # a strict variant may disagree with its reference on at most 0.5 % of the images


def load_checked(path, size=100):
    """onnx.load + checker + the interface of this pipeline's models; UserError otherwise: the
    image-only model's one input `input`, or an RR model's `image` and `rr` (N x k, with the k
    feature names and their normalisation in the metadata, onnx_export.RR_KEY)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: ONNX file not found (run 6_AIMET_quantization.py first)")
    try:
        m = onnx.load(str(path))
        onnx.checker.check_model(m)
    except Exception as e:
        raise UserError(f"{path}: corrupt or invalid ONNX ({str(e).splitlines()[0][:200]})") from None
    ins = {i.name: i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}}
    if sorted(ins) not in ([INPUT], sorted([IMAGE, RR])) or [o.name for o in m.graph.output] != [OUTPUT]:
        raise UserError(f"{path}: not an ONNX model of this pipeline (expects input '{INPUT}', or inputs "
                        f"'{IMAGE}' and '{RR}', and output '{OUTPUT}'; it has {sorted(ins)})")
    dims = _dims(ins[image_input(m)])
    if dims[1:] not in ([1, size, size], [2, size, size]):   # 2: the beat and the patient's template
        raise UserError(f"{path}: input shape {dims}, expected [batch, 1, {size}, {size}] (or 2 channels: beat "
                        "and template)")
    if RR in ins:
        rr = rr_metadata(m)
        if rr is None:
            raise UserError(f"{path}: input '{RR}' but no '{RR_KEY}' metadata (feature names and normalisation)")
        if _dims(ins[RR])[1:] != [len(rr["names"])]:
            raise UserError(f"{path}: input '{RR}' has shape {_dims(ins[RR])}, expected [batch, {len(rr['names'])}] "
                            f"for the features {rr['names']} of its metadata")
    if opset(m) != OPSET:
        raise UserError(f"{path}: opset {opset(m)}; the pipeline exports opset {OPSET} (TensorRT 8.2 takes <= 13)")
    return m


def _dims(value_info):
    return [d.dim_value or d.dim_param for d in value_info.type.tensor_type.shape.dim]


def image_input(m):
    """The name of the scalogram input: 'input' (image-only model) or 'image' (RR model)."""
    return IMAGE if any(i.name == IMAGE for i in m.graph.input) else INPUT


def rr_metadata(m):
    """The RR features' {"names", "mean", "std"} from the metadata, or None (image-only model)."""
    import json

    return next((json.loads(p.value) for p in m.metadata_props if p.key == RR_KEY), None)


def feeds(m, images, rr=None):
    """ONNX Runtime feeds for `m`: the images alone (N, 1, H, W), or {image, rr} for an RR model."""
    if rr_metadata(m) is None:
        return images
    if rr is None:
        raise UserError("the model takes RR features (input 'rr'), which these images do not have")
    return {IMAGE: images, RR: np.ascontiguousarray(rr, dtype=np.float32)}


def opset(m):
    return next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))


def qdq_summary(m):
    """Q/DQ node counts, and whether every Conv/Gemm weight is quantized to int8 with zero point
    0 (stored as int8, or a float weight through QuantizeLinear); `problems` lists the others."""
    from onnx import numpy_helper

    inits = {t.name: t for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    ops = [n.op_type for n in m.graph.node]
    problems, quantized = [], 0
    for node in m.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        dq = producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3 or dq.input[2] not in inits:
            problems.append(f"{node.name}: weight is not dequantized from int8 with a constant zero point")
            continue
        zp = numpy_helper.to_array(inits[dq.input[2]])
        if zp.dtype != np.int8 or np.any(zp != 0):
            problems.append(f"{node.name}: weight zero point is not int8 0")
            continue
        quantized += 1
    if not ops.count("QuantizeLinear"):
        problems.append("no QuantizeLinear nodes")
    return {"quantize_linear": ops.count("QuantizeLinear"), "dequantize_linear": ops.count("DequantizeLinear"),
            "quantized_conv_gemm": quantized, "problems": problems}


def check_qdq(m, path):
    """qdq_summary, or a UserError when a Conv/Gemm is left unquantized."""
    s = qdq_summary(m)
    if s["problems"]:
        raise UserError(f"{path}: not a complete int8 Q/DQ model: " + "; ".join(s["problems"][:5]))
    return s


def check_file(path, size=100, require="tensorrt_8_2"):
    """(model, verdict): load_checked, then TensorRT's parser rules (ecg/trt_compat.py). The
    verdict is {'tensorrt_8_2': 'ok' | 'no (...)', 'tensorrt_10_form': the same rules with
    INT8-stored weights allowed}. `require` (one of those keys, or None): a file that fails it
    is a UserError naming the node and the rule."""
    m = load_checked(path, size)
    if require not in (None, *REQUIREMENTS):
        raise ValueError(f"require={require!r}")
    if require:
        trt_compat.check(m, path, allow_int8_weights=REQUIREMENTS[require])
    return m, {key: trt_compat.verdict(m, allow_int8_weights=allow) for key, allow in REQUIREMENTS.items()}


# label: the table's row; path: the file; optimize: ORT_ENABLE_ALL (else ORT_DISABLE_ALL);
# reference: the key of the logits it is compared with; strict: the agreement rule applies;
# key: stores this row's logits as a reference for later rows; timed: measure its latency
Variant = namedtuple("Variant", "label path optimize reference strict key timed", defaults=(None, True))


# The files stage 7 checks, by role, and the TensorRT rules each must pass (None: only reported).
ROLES = {"float": "tensorrt_8_2", "qdq": "tensorrt_8_2", "fp16": "tensorrt_8_2",
         "qdq_int8_weights": "tensorrt_10_form", "dynamic": None}
QDQ_ROLES = ("qdq", "qdq_int8_weights")


def check_files(paths, size=100):
    """check_file for each file of `paths` (role -> path, roles of ROLES); the Q/DQ files also
    through check_qdq; all files must take the same inputs (the same RR features, or none).
    Returns ({file name: verdict}, the Q/DQ summary of paths['qdq']); rr_metadata of any of
    them tells the RR features they take."""
    verdicts, summary, rr = {}, None, {}
    for role, path in paths.items():
        m, verdicts[Path(path).name] = check_file(path, size, ROLES[role])
        rr[path] = rr_metadata(m) if any(i.name == RR for i in m.graph.input) else None
        if role in QDQ_ROLES:
            s = check_qdq(m, path)
            summary = s if role == "qdq" else summary
    first = next(iter(paths.values()))
    for path, value in rr.items():
        if value != rr[first]:
            raise UserError(f"{path}: takes RR features {value and value['names']}, {first} takes "
                            f"{rr[first] and rr[first]['names']}: the files are not exports of one model")
    return verdicts, summary


def stage7_variants(paths):
    """Stage 7's table: one Variant per row for the files of `paths` (role -> path). References:
    'PyTorch float' and 'AIMET sim' (stage 6's test logits), 'FP32 ONNX' (the first row)."""
    rows = [Variant("float ONNX, FP32 (ORT)", paths["float"], True, "PyTorch float", True, key="FP32 ONNX")]
    if "fp16" in paths:
        rows.append(Variant("FP16 ONNX (Nano FP16 estimate; not timed: no FP16 kernels on a CPU)", paths["fp16"],
                            True, "FP32 ONNX", True, timed=False))
    rows += [Variant("Q/DQ ONNX, ORT_DISABLE_ALL (exact Q/DQ semantics)", paths["qdq"], False, "AIMET sim", True),
             Variant("Q/DQ ONNX, ORT int8 kernels (not TensorRT's numbers)", paths["qdq"], True, "AIMET sim", False)]
    if "qdq_int8_weights" in paths:
        rows.append(Variant("Q/DQ, INT8-stored weights (TensorRT >= 10 / ORT only)", paths["qdq_int8_weights"],
                            False, "AIMET sim", True))
    if "dynamic" in paths:
        rows.append(Variant("quantize_dynamic int8 (thesis; not loadable by TensorRT)", paths["dynamic"], True,
                            "PyTorch float", False))
    return rows


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


def run_all(sess, inputs, batch_size=256, desc=None):
    """Logits for all rows of `inputs`: {input name: array}, or one (N, 1, H, W) float32 array
    for the scalogram input of an image-only model (feeds()); a progress bar when `desc` is given."""
    from tqdm import tqdm

    feeds = inputs if isinstance(inputs, dict) else {INPUT: inputs}
    n = len(next(iter(feeds.values())))
    starts = tqdm(range(0, n, batch_size), desc=desc, unit="batch", mininterval=2, disable=desc is None)
    return np.concatenate([sess.run([OUTPUT], {k: v[i:i + batch_size] for k, v in feeds.items()})[0]
                           for i in starts])


def latency(sess, inputs):
    """evaluation.time_model for an ONNX Runtime session (batch 1 and 64); `inputs` as in run_all."""
    if not isinstance(inputs, dict):
        return evaluation.time_model(lambda x: sess.run([OUTPUT], {INPUT: x.numpy()}), torch.from_numpy(inputs[:1]))
    names = list(inputs)
    return evaluation.time_model(lambda x: sess.run([OUTPUT], {n: t.numpy() for n, t in zip(names, x)}),
                                 tuple(torch.from_numpy(v[:1]) for v in inputs.values()))



def evaluate_variants(variants, references, images, targets, classes, time_it=True, threads=0):
    """Run every variant on `images` (an array, or the feeds of an RR model: feeds()); return
    (rows, failures). `references` (name -> logits) is extended with the logits of each variant
    that has a key. `threads`: ONNX Runtime's intra-op threads (0 = all cores), the config's
    train.threads, so a run limited to one core stays on one core."""
    references = dict(references)
    rows, failures = [], []
    for v in variants:
        sess = session(v.path, v.optimize, threads)
        logits = run_all(sess, images, desc=v.label[:40])
        if v.key:
            references[v.key] = logits
        pred = logits.argmax(1)
        m = evaluation.metrics(targets, pred, classes)
        agree = float((pred == references[v.reference].argmax(1)).mean())
        row = {"variant": v.label, "file": Path(v.path).name, "bytes": Path(v.path).stat().st_size,
               "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "reference": v.reference,
               "agreement": agree, "strict": v.strict, "per_class": m["per_class"],
               "confusion_matrix": m["confusion_matrix"]}
        if time_it and v.timed:
            row.update(latency(sess, images))
        rows.append(row)
        if v.strict and agree < 1 - MAX_DISAGREEMENT:
            failures.append(f"{v.path}: {v.label} disagrees with {v.reference} on {(1 - agree) * 100:.2f} % of "
                            f"the test images (at most {MAX_DISAGREEMENT * 100:.1f} % allowed)")
    return rows, failures


def format_table(summary):
    """The text report: Q/DQ counts, then one line per variant, then each file's TensorRT verdict."""
    q = summary["qdq"]
    lines = [f"Q/DQ ONNX: {q['quantize_linear']} QuantizeLinear, {q['dequantize_linear']} DequantizeLinear, "
             f"{q['quantized_conv_gemm']} Conv/Gemm with int8 weights (zero point 0)",
             f"  {'variant':66s} {'size kB':>8} {'acc':>7} {'macroF1':>8} {'agree':>8}  {'with':15s} "
             f"{'b1 ms':>7} {'b64 ms':>8}"]
    for r in summary["results"]:
        timing = f"{r['batch1_ms']:7.2f} {r['batch64_ms']:8.1f}" if "batch1_ms" in r else ""
        lines.append(f"{'*' if r['strict'] else ' '} {r['variant']:66s} {r['bytes'] / 1024:8.0f} {r['accuracy']:7.4f} "
                     f"{r['macro_f1']:8.4f} {r['agreement'] * 100:7.2f}%  {r['reference']:15s} {timing}")
    if summary.get("rr_features"):
        lines.append(f"  inputs: image + rr ({', '.join(summary['rr_features']['names'])}; raw values, standardised "
                     "inside the model; fed from the test split's manifest)")
    lines += ["", f"* must agree with its reference ('with') on at least {(1 - MAX_DISAGREEMENT) * 100:.1f} % of the "
                  "test images (argmax)", "",
              "TensorRT compatibility (ecg/trt_compat.py; TensorRT 8.2 parser rules, not a TensorRT run):"]
    for name, v in summary["tensorrt"].items():
        lines.append(f"  {name:42s} TensorRT 8.2: {v['tensorrt_8_2']}")
        if v["tensorrt_10_form"] != v["tensorrt_8_2"]:
            lines.append(f"  {'':42s} TensorRT >= 10 (INT8 weights allowed): {v['tensorrt_10_form']}")
    return "\n".join(lines) + "\n"


def write_summary(reports, summary):
    """reports/onnx_summary.{json,txt}; prints the table."""
    files.write_text(Path(reports) / "onnx_summary.json", json.dumps(summary, indent=2))
    text = format_table(summary)
    files.write_text(Path(reports) / "onnx_summary.txt", text)
    print(text)
