"""Stage 6: AIMET CLE + BN folding + W8A8 quantization-aware training of the pruned model, and
the TensorRT-ready exports.

    python 6_AIMET_quantization.py [--epochs 20] [--calibration-images 1000] [--resume]

Writes into model_save/: ecg_model_quantized.onnx (explicit Q/DQ, opset 13: float weights ->
QuantizeLinear -> DequantizeLinear per channel, int8, zero point 0: TensorRT 8.2-10 INT8),
ecg_model_quantized_trt10.onnx (the same with INT8-stored weights, ~3.5x smaller: TensorRT >= 10
and ONNX Runtime only), ecg_model_float.onnx (BN-folded float, opset 13: FP16 engines, e.g. the
Jetson Nano), ecg_model_quantized_encodings.json, ecg_model_qat.pth (QAT weights + encodings, loads
with weights_only=True); into reports/: weight-range boxplots, qat_log.csv, test_result_qat.*,
and the test-set logits of both PyTorch models for stage 7's agreement check.

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
import os
import copy
from pathlib import Path

import numpy as np
import torch

import Class_Dataset as dataset  # the layout's dataset module
import Class_Model as model  # the layout's model module
from ecg import config, evaluation, files, onnx_export, quantization, split, training
from ecg.errors import UserError, main_guard


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
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("6_AIMET_quantization.py does not run under torchrun: AIMET's QuantizationSimModel is not "
                        "supported by this pipeline under DistributedDataParallel (encodings and quantizer training "
                        "are single-process); run it as one process: python 6_AIMET_quantization.py ...")
    cfg = config.load(args)
    q, t = cfg["qat"], cfg["train"]
    training.setup(t["seed"], t["threads"])
    device = training.pick_device(t["device"])
    out_dir, reports = cfg.path("model_dir"), cfg.path("reports_dir")
    src = Path(args.model) if args.model else cfg.artifact("pruned_model")
    net, meta = model.load(src)
    classes, size, rr = meta["classes"], meta["input_size"][-1], meta.get("rr_features")
    inputs, rr_meta = model.example_inputs(meta), onnx_export.rr_metadata(meta)
    train_dir, val_dir, test_dir = split.checked_dirs(cfg)   # one split, not a half-swapped re-run of stage 2
    train_data = dataset.ScalogramDataset(train_dir, classes=classes, rr_features=rr)
    calib = quantization.calibration_inputs(train_data, q["calibration_images"], t["seed"])
    val_data = dataset.ScalogramDataset(val_dir, classes=classes, rr_features=rr)
    test_data = dataset.ScalogramDataset(test_dir, classes=classes, rr_features=rr)
    files.check_writable(out_dir)
    files.check_writable(reports)

    # CLE + BN folding, with the weight ranges of one depthwise conv before and after
    net.eval()
    before = quantization.weight_ranges(net, q["boxplot_layer"])
    folding = quantization.equalize_and_fold(net, inputs)
    quantization.plot_weight_ranges(reports / "weight_ranges_cle.png", before,
                                    quantization.weight_ranges(net, q["boxplot_layer"]), q["boxplot_layer"])
    print(f"folded {folding['batch_norms'] - folding['batch_norms_left']} of {folding['batch_norms']} batch norms")
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

    m, qat_logits = evaluation.evaluate_and_report(sim.model, classes, test_data, reports, "test_result_qat",
                                                   torch.device("cpu"), {"model": "AIMET W8A8 simulation (QAT)"})
    files.save_with(reports / "stage6_test_logits.npz", lambda tmp: np.savez(
        tmp, float=float_logits.numpy(), qat=qat_logits.numpy(), targets=test_data.targets.numpy(),
        paths=np.array([str(p) for p in test_data.paths]), split_id=np.array(split.split_id(test_dir) or "")),
        suffix=".npz")
    onnx_export.export_qdq(sim, cfg.artifact("quantized_onnx"), classes, inputs, rr=rr_meta)
    onnx_export.export_qdq(sim, cfg.artifact("quantized_onnx_int8_weights"), classes, inputs, int8_weights=True,
                           rr=rr_meta)
    quantization.save_encodings(sim, cfg.artifact("encodings"))
    model.save(cfg.artifact("qat_model"), sim.model.state_dict(), classes, size,
               shapes=meta.get("layer_shapes"), rr_features=rr, arch=meta["arch"], channels=meta["input_size"][0],
               image_input=meta.get("image_input", "as_is"), qat={"quant_scheme": q["quant_scheme"], "epochs": len(history),
                                                    "best_epoch": best["epoch"] if best else None})
    config.record(cfg, "qat")
    print(f"wrote {cfg.artifact('quantized_onnx')}, {cfg.artifact('quantized_onnx_int8_weights')} and "
          f"{cfg.artifact('float_onnx')}")


if __name__ == "__main__":
    main()
