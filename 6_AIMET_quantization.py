"""Stage 6: AIMET CLE + BN folding + W8A8 quantization-aware training of the pruned model, and
the TensorRT-ready exports.

    python 6_AIMET_quantization.py [--epochs 20] [--calibration-images 1000] [--resume]

Writes into model_save/: ecg_model_quantized.onnx (explicit Q/DQ, opset 13: float weights ->
QuantizeLinear -> DequantizeLinear per channel, int8, zero point 0: TensorRT 8.2-10 INT8),
ecg_model_qdq_int8_weights.onnx (the same with INT8-stored weights, ~3.5x smaller: TensorRT >= 10
and ONNX Runtime only), ecg_model_float.onnx (BN-folded float, opset 13: FP16 engines, e.g. the
Jetson Nano), ecg_model_quantized_encodings.json, ecg_model_qat.pth (QAT weights + encodings, loads
with weights_only=True); into reports/: weight-range boxplots, qat_log.csv, test_result_qat.*,
and into model_save/ the test-set logits of both PyTorch models for stage 7's agreement check
(ecg/test_logits.py).

A model with RR features (config model.rr_features) is quantized with its two inputs: CLE, BN
folding and the sim are traced with (image, rr), encodings are computed on (image, rr) pairs of
training beats, QAT reads the RR features from the split manifests, and the ONNX files take the
inputs `image` (N x 1 x 100 x 100) and `rr` (N x 7, raw values) with the feature names and their
normalisation in the metadata. The raw RR input and its standardisation stay float, everything
after it is INT8 (why: ecg/quantization.py).

Not under torchrun: AIMET's QuantizationSimModel is not supported by this pipeline under
DistributedDataParallel (its encodings are computed and its quantizers trained in one process;
AIMET 2.42 documents no multi-process QAT), so the script refuses with an error. QAT of the
pruned model is short (README); run it as one process, on a GPU where there is one.
"""
import copy
from pathlib import Path

import torch

import Class_Dataset as dataset  # the layout's dataset module
import Class_Model as model  # the layout's model module
from ecg import config, evaluation, onnx_export, quantization, split, test_logits, training
from ecg.errors import main_guard


def get_args_parser():
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--model", help=f"pruned model (default: {config.default_artifact('pruned_model')})")
    config.flag(p, "--epochs", "qat.epochs", help="QAT epochs")
    config.flag(p, "--lr", "qat.lr", help="QAT learning rate (Adam)")
    config.flag(p, "--batch-size", "qat.batch_size", help="QAT batch size")
    config.flag(p, "--calibration-images", "qat.calibration_images", help="training images for compute_encodings")
    config.flag(p, "--quant-scheme", "qat.quant_scheme", choices=["tf_enhanced", "tf"],
                help="AIMET scheme of the initial encodings")
    p.add_argument("--resume", action="store_true", help="continue an interrupted QAT")
    return p


@main_guard
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    quantization.single_process_only()
    cfg = config.load(args)
    q, t = cfg["qat"], cfg["train"]
    out_dir, reports = cfg.path("model_dir"), cfg.path("reports_dir")
    device, _ = training.start(t, out_dir, reports, processes=False)
    src = Path(args.model) if args.model else cfg.artifact("pruned_model")
    net, meta = model.load(src)
    classes, rr = meta["classes"], meta.get("rr_features")
    inputs, rr_meta = model.example_inputs(meta), onnx_export.rr_metadata(meta)
    train_dir, val_dir, test_dir = split.checked_dirs(cfg)   # one split, not a half-swapped re-run of stage 2
    train_data, val_data, test_data = (dataset.ScalogramDataset(d, classes=classes, rr_features=rr)
                                       for d in (train_dir, val_dir, test_dir))
    calib = quantization.calibration_inputs(train_data, q["calibration_images"], t["seed"])

    quantization.fold_with_plot(net, inputs, reports / "weight_ranges_cle.png", q["boxplot_layer"])
    onnx_export.export_float(net, cfg.artifact("float_onnx"), classes, inputs, rr_meta)
    float_logits = training.predict(net, test_data, torch.device("cpu"), desc="float")
    # W8A8 sim, encodings from real training images, then QAT validated on val_images
    sim = quantization.sim_model(copy.deepcopy(net), quantization.write_config(out_dir), inputs, q["quant_scheme"])
    print(f"compute_encodings on {len(calib[0])} training images ({q['quant_scheme']}) ...", flush=True)
    quantization.calibrate(sim, calib)
    history, best = training.fit(sim.model, train_data, val_data, cfg.section("qat"), device,
                                 out_dir / "ecg_model_qat.ckpt.pth", reports / "qat_log.csv", resume=args.resume,
                                 desc="QAT")
    sim.model.load_state_dict(best["state_dict"])
    sim.model.cpu().eval()
    if history:
        training.plot_history(reports / "qat_curves.png", history, "QAT")
    _, qat_logits = evaluation.evaluate_and_report(sim.model, classes, test_data, reports, "test_result_qat",
                                                   torch.device("cpu"), {"model": "AIMET W8A8 simulation (QAT)"})
    test_logits.save(cfg.artifact("test_logits"), float_logits, qat_logits, test_data, test_dir)
    onnx_export.export_qdq(sim, cfg.artifact("quantized_onnx"), classes, inputs, rr=rr_meta)
    onnx_export.export_qdq(sim, cfg.artifact("qdq_int8_weights_onnx"), classes, inputs, int8_weights=True, rr=rr_meta)
    quantization.save_encodings(sim, cfg.artifact("encodings"))
    model.save(cfg.artifact("qat_model"), sim.model.state_dict(), classes, meta["input_size"][-1],
               shapes=meta.get("layer_shapes"), rr_features=rr, arch=meta["arch"], channels=meta["input_size"][0],
               image_input=meta.get("image_input", "as_is"),
               qat={"quant_scheme": q["quant_scheme"], "epochs": len(history), "best_epoch": best["epoch"] if best else None})
    config.record(cfg, "qat")
    print(f"wrote {cfg.artifact('quantized_onnx')}, {cfg.artifact('qdq_int8_weights_onnx')} and "
          f"{cfg.artifact('float_onnx')}")


if __name__ == "__main__":
    main()
