"""Stage 7: check every ONNX export (with TensorRT 8.2's parser rules) and evaluate it on test_images.

    python 7_AIMET_onnx.py

Reads the float and Q/DQ ONNX of stage 6 (and the INT8-weight Q/DQ, if there), writes the FP16
conversion of the float ONNX (model_save/ecg_model_fp16.onnx) and the thesis' quantize_dynamic
variant (model_save/ecg_model_quantized_int8.onnx, not loadable by TensorRT), checks each file
(onnx.checker, this pipeline's interface, ecg/trt_compat.py's TensorRT 8.2 rules) and evaluates
each one: accuracy, macro F1, argmax agreement with its reference, size, latency, into
reports/onnx_summary.{txt,json}. Fails (exit 2) when the float, Q/DQ or FP16 file breaks a
TensorRT 8.2 rule, or disagrees with its reference (PyTorch model, AIMET simulation, FP32 ONNX)
on more than 0.5 % of the test images. Also writes model_save/cwt_operator.npz, the CWT
operator jetson/infer_trt.py needs.

Two-input models (RR features): the files take `image` and `rr`; the RR features named in their
metadata are read from the test split's manifest and fed beside each image, to every file alike.
"""
from pathlib import Path


import Class_Dataset as dataset  # the layout's dataset module
from ecg import config, onnx_check, onnx_export, preprocess, scalogram, split, test_logits
from ecg.errors import UserError, main_guard


def get_args_parser():
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--float-onnx", help=f"float ONNX (default: {config.default_artifact('float_onnx')})")
    p.add_argument("--qdq-onnx", help=f"Q/DQ ONNX (default: {config.default_artifact('quantized_onnx')})")
    p.add_argument("--no-timing", action="store_true", help="skip the latency measurements")
    return p


@main_guard
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    cfg = config.load(args)
    reports, size = cfg.path("reports_dir"), cfg["preprocess"]["image_size"]
    paths = {"float": Path(args.float_onnx) if args.float_onnx else cfg.artifact("float_onnx"),
             "qdq": Path(args.qdq_onnx) if args.qdq_onnx else cfg.artifact("quantized_onnx")}
    onnx_check.check_files(paths, size)  # before any work: the files TensorRT gets pass its rules
    m_float = onnx_check.load_checked(paths["float"], size)
    rr = onnx_check.rr_metadata(m_float)  # None: image-only model
    _, _, test_dir = split.checked_dirs(cfg, needed=("test",))
    data = dataset.ScalogramDataset(test_dir, rr_features=rr and rr["names"])
    references = test_logits.load(cfg.artifact("test_logits"), data, test_dir)
    scalogram.write_device_operator(cfg.artifact("cwt_operator"), preprocess.made_with(cfg), data.classes,
                                    source=cfg.path("scalogram_dir"))

    paths["fp16"], paths["dynamic"] = cfg.artifact("fp16_onnx"), cfg.artifact("dynamic_int8_onnx")
    onnx_export.convert_fp16(paths["float"], paths["fp16"])
    onnx_export.quantize_dynamic_int8(paths["float"], paths["dynamic"])
    if cfg.artifact("qdq_int8_weights_onnx").is_file():  # optional: TensorRT >= 10 / ONNX Runtime only
        paths["qdq_int8_weights"] = cfg.artifact("qdq_int8_weights_onnx")
    tensorrt, qdq = onnx_check.check_files(paths, size)
    images = dataset.as_batch(data.images).numpy()
    inputs = onnx_check.feeds(m_float, images, None if data.rr is None else data.rr.numpy())
    rows, failures = onnx_check.evaluate_variants(onnx_check.stage7_variants(paths), references, inputs,
                                                  data.targets.numpy(), data.classes, time_it=not args.no_timing,
                                                  threads=cfg["train"]["threads"])
    summary = {"qdq": qdq, "tensorrt": tensorrt, "results": rows, "test_images": len(data),
               "onnxruntime_threads": cfg["train"]["threads"] or "all cores", **({"rr_features": rr} if rr else {})}
    onnx_check.write_summary(reports, summary)
    if failures:
        raise UserError("; ".join(failures))


if __name__ == "__main__":
    main()
