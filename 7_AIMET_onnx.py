"""Stage 7: check every exported ONNX and evaluate it with ONNX Runtime on test_images.

    python 7_AIMET_onnx.py

Checks: onnx.checker, opset 13, Q/DQ node counts, int8 weights with zero point 0 on every
quantized Conv/Gemm. Runs: the float ONNX; the QDQ ONNX with ORT_DISABLE_ALL (exact Q/DQ
semantics) and with ORT's own int8 kernels (ORT_ENABLE_ALL, labelled as such); and the thesis'
quantize_dynamic variant (model_save/ecg_model_quantized_int8.onnx, not loadable by TensorRT).
Writes reports/onnx_summary.{txt,json}; fails (exit 2) when the float or QDQ export disagrees
with its PyTorch source on more than 0.5 % of the test images. Also writes the CWT operator
file that jetson/infer_trt.py needs (model_save/cwt_operator.npz).
"""
import json
from pathlib import Path

import numpy as np

from ecg import config, dataset, evaluation, files, onnx_export, preprocess, scalogram
from ecg.errors import UserError, main_guard

MAX_DISAGREEMENT = 0.005


@main_guard
def main():
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--float-onnx", help="default: model_save/ecg_model_float.onnx")
    p.add_argument("--qdq-onnx", help="default: model_save/ecg_model_quantized.onnx")
    args = p.parse_args()
    cfg = config.load(args)
    out_dir, reports = cfg.path("model_dir"), cfg.path("reports_dir")
    float_path = Path(args.float_onnx) if args.float_onnx else out_dir / "ecg_model_float.onnx"
    qdq_path = Path(args.qdq_onnx) if args.qdq_onnx else out_dir / "ecg_model_quantized.onnx"
    ref_path = reports / "stage6_test_logits.npz"
    size = cfg["preprocess"]["image_size"]
    made = preprocess.made_with(cfg)  # the device must preprocess as stage 1 did
    if made["cwt_context"] != "beat":
        raise UserError(f"{cfg.path('scalogram_dir')}: made with cwt_context '{made['cwt_context']}'; the "
                        "device's CWT operator implements the thesis' per-beat CWT only")

    float_m = onnx_export.load_checked(float_path, size)
    qdq_m = onnx_export.load_checked(qdq_path, size)
    checks = {"float": {"opset": onnx_export.opset(float_m)}, "qdq": {"opset": onnx_export.opset(qdq_m),
                                                                      **onnx_export.qdq_check(qdq_m)}}
    for name, c in checks.items():
        if c["opset"] != 13:
            raise UserError(f"{float_path if name == 'float' else qdq_path}: opset {c['opset']}, TensorRT 8.2 needs 13")
    if checks["qdq"]["problems"] or not checks["qdq"]["quantize_linear"]:
        raise UserError(f"{qdq_path}: not a TensorRT-ready Q/DQ model: "
                        + "; ".join(checks["qdq"]["problems"] or ["no QuantizeLinear nodes"]))
    if not ref_path.is_file():
        raise UserError(f"{ref_path}: missing (written by 6_AIMET_quantization.py)")
    ref = np.load(ref_path)

    from onnxruntime.quantization import QuantType, quantize_dynamic

    dyn_path = out_dir / "ecg_model_quantized_int8.onnx"
    files.save_with(dyn_path, lambda tmp: quantize_dynamic(str(float_path), tmp, weight_type=QuantType.QInt8),
                    suffix=".onnx")

    data = dataset.ScalogramDataset(cfg.path("test_dir"))
    if [str(p) for p in data.paths] != [str(p) for p in ref["paths"]]:
        raise UserError(f"{cfg.path('test_dir')}: not the test set stage 6 evaluated; re-run 6_AIMET_quantization.py")
    images = data.images.unsqueeze(1).float().div(255).numpy()
    y = data.targets.numpy()
    variants = [("float ONNX (ORT)", float_path, True, ref["float"], True),
                ("QDQ ONNX, ORT_DISABLE_ALL (exact Q/DQ semantics)", qdq_path, False, ref["qat"], True),
                ("QDQ ONNX, ORT int8 kernels (ORT_ENABLE_ALL; not TensorRT's numbers)", qdq_path, True, ref["qat"], False),
                ("quantize_dynamic int8 (thesis; not loadable by TensorRT)", dyn_path, True, ref["float"], False)]
    rows, failures = [], []
    for label, path, optimize, source, strict in variants:
        try:
            sess = onnx_export.session(path, optimize)
        except UserError as e:
            if strict:
                raise
            rows.append({"variant": label, "file": path.name, "error": str(e)})
            continue
        logits = onnx_export.run_all(sess, images)
        pred = logits.argmax(1)
        m = evaluation.metrics(y, pred, data.classes)
        agree = float((pred == source.argmax(1)).mean())
        rows.append({"variant": label, "file": path.name, "bytes": path.stat().st_size, "accuracy": m["accuracy"],
                     "macro_f1": m["macro_f1"], "agreement_with_pytorch": agree,
                     **onnx_export.latency(sess, images[0])})
        if strict and agree < 1 - MAX_DISAGREEMENT:
            failures.append(f"{path}: disagrees with its PyTorch source on {(1 - agree) * 100:.2f} % of test images")
    # the operator the device needs to make scalograms without PyWavelets
    sc = scalogram.scales(made["fs"], made["freq_min"], made["freq_max"], made["wavelet"])
    files.save_with(out_dir / "cwt_operator.npz", lambda tmp: np.savez(
        tmp, operator=scalogram.cwt_operator(made["before"] + made["after"], tuple(sc), made["wavelet"]),
        classes=np.array(data.classes), **{k: np.array(made[k]) for k in (
            "fs", "lead", "before", "after", "image_size", "baseline_windows_s", "align_halfwidth_s",
            "invalid_symbols")}), suffix=".npz")

    size_ratio = qdq_path.stat().st_size / float_path.stat().st_size
    summary = {"checks": checks, "results": rows, "test_images": len(data), "qdq_to_float_size": size_ratio}
    files.write_text(reports / "onnx_summary.json", json.dumps(summary, indent=2))
    text = format_table(summary)
    files.write_text(reports / "onnx_summary.txt", text)
    print(text)
    if failures:
        raise UserError("; ".join(failures))


def format_table(s):
    q = s["checks"]["qdq"]
    lines = [f"QDQ ONNX: opset {q['opset']}, {q['quantize_linear']} QuantizeLinear, {q['dequantize_linear']} "
             f"DequantizeLinear, {q['quantized_conv_gemm']} Conv/Gemm with int8 weights (zero point 0); "
             f"size {s['qdq_to_float_size']:.3f} of the float ONNX",
             f"{'variant':70s} {'size kB':>8} {'acc':>7} {'macroF1':>8} {'agree':>7} {'b1 ms':>7} {'b64 ms':>8}"]
    for r in s["results"]:
        if "error" in r:
            lines.append(f"{r['variant']:70s} {r['error']}")
        else:
            lines.append(f"{r['variant']:70s} {r['bytes'] / 1024:8.0f} {r['accuracy']:7.4f} {r['macro_f1']:8.4f} "
                         f"{r['agreement_with_pytorch'] * 100:6.2f}% {r['batch1_ms']:7.2f} {r['batch64_ms']:8.1f}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
