"""Stage 6: AIMET cross-layer equalization, batch-norm folding and a W8A8 QuantizationSimModel
that TensorRT can run (symmetric signed int8 activations, per-channel symmetric weights).
The ONNX exports of the result are in onnx_export.py.

Models with RR features (RRFusionNet) take two inputs: every function here takes the model's
example inputs (model.example_inputs) and calibrates on (image, rr) pairs of training beats.
What is quantised on the RR path, and why:

- float: the raw `rr` input (seconds) and its standardisation `(rr - rr_mean) / rr_std`. The
  seven features have different units and ranges (RR in seconds, 0.2-2 s; the relative ones
  around 1); one per-tensor int8 scale over the raw values would spend its 256 steps on the
  largest feature, and TensorRT needs Q/DQ only where INT8 is wanted. Two elementwise ops on
  7 numbers cost nothing in FP16/FP32.
- INT8: everything after the standardisation, as AIMET's default places it: the standardised
  features (about zero mean, unit variance each, so one per-tensor scale serves all seven) are
  quantized at the input of `rr_layer`, whose weights are per-channel int8 and whose ReLU output
  is quantized; the concatenation of image and RR features is quantized at the classifier's
  input, whose weights are per-channel int8 too. So the whole network after the standardisation
  runs as INT8 in a TensorRT engine, and every Conv/Gemm of the Q/DQ ONNX has int8 weights
  (stage 7's check). tests/test_rr_pipeline.py holds the export to this placement.
"""
import json
import os
from pathlib import Path

import numpy as np
import torch

from . import files
from .dataset import as_batch
from .errors import UserError

# AIMET's default_config_per_channel.json with symmetric, signed activations: TensorRT's INT8
# Q/DQ layers need zero point 0 for activations as well as weights.
TRT_CONFIG = {
    "defaults": {"ops": {"is_output_quantized": "True", "is_symmetric": "True"},
                 "params": {"is_quantized": "True", "is_symmetric": "True"},
                 "strict_symmetric": "False", "unsigned_symmetric": "False", "per_channel_quantization": "True"},
    "params": {"bias": {"is_quantized": "False"}},
    "op_type": {},
    "supergroups": [{"op_list": ["Conv", "Relu"]}, {"op_list": ["Conv", "Clip"]}, {"op_list": ["Add", "Relu"]},
                    {"op_list": ["Gemm", "Relu"]}],
    "model_input": {"is_input_quantized": "True"},
    "model_output": {},
}


def import_aimet():
    """Import AIMET lazily (several seconds) and teach it to leave StochasticDepth alone: it has
    no quantized counterpart, and it is the identity at inference anyway."""
    from aimet_torch.nn import QuantizationMixin
    from torchvision.ops import StochasticDepth

    QuantizationMixin.ignore(StochasticDepth)
    import aimet_torch

    return aimet_torch


def single_process_only():
    """AIMET's QuantizationSimModel is not supported by this pipeline under DistributedDataParallel
    (encodings and quantizer training are single-process; AIMET 2.42 documents no multi-process QAT)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("6_AIMET_quantization.py does not run under torchrun: AIMET's QuantizationSimModel is not "
                        "supported by this pipeline under DistributedDataParallel (encodings and quantizer training "
                        "are single-process); run it as one process: python 6_AIMET_quantization.py ...")


def write_config(folder):
    path = Path(folder) / "aimet_trt_config.json"
    files.write_text(path, json.dumps(TRT_CONFIG, indent=2))
    return path


def _dummy(inputs):
    """AIMET's dummy_input: the one tensor of an image-only model, the tuple of a two-input one."""
    inputs = tuple(inputs)
    return inputs[0] if len(inputs) == 1 else inputs


def equalize_and_fold(net, inputs):
    """CLE (which folds batch norms first), then fold whatever batch norms remain. In place.
    `inputs`: the model's example inputs (model.example_inputs)."""
    import_aimet()
    from aimet_torch.batch_norm_fold import fold_all_batch_norms
    from aimet_torch.cross_layer_equalization import equalize_model

    net.eval()
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    equalize_model(net, dummy_input=_dummy(inputs))
    shapes = [tuple(t.shape) for t in inputs]
    fold_all_batch_norms(net, input_shapes=shapes[0] if len(shapes) == 1 else shapes)
    left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    return {"batch_norms": n_bn, "batch_norms_left": left}


def fold_with_plot(net, inputs, plot_path, layer):
    """CLE + batch-norm folding of `net` (in place), with the per-output-channel weight ranges of
    `layer` before and after plotted to plot_path; returns equalize_and_fold's counts."""
    net.eval()
    before = weight_ranges(net, layer)
    folding = equalize_and_fold(net, inputs)
    plot_weight_ranges(plot_path, before, weight_ranges(net, layer), layer)
    print(f"folded {folding['batch_norms'] - folding['batch_norms_left']} of {folding['batch_norms']} batch norms")
    return folding


def sim_model(net, config_path, inputs, quant_scheme="tf_enhanced"):
    """The W8A8 QuantizationSimModel of `net` (example `inputs` as in equalize_and_fold)."""
    aimet = import_aimet()
    from aimet_torch.quantsim import QuantizationSimModel

    schemes = {"tf_enhanced": aimet.common.defs.QuantScheme.post_training_tf_enhanced,
               "tf": aimet.common.defs.QuantScheme.post_training_tf}
    if quant_scheme not in schemes:
        raise UserError(f"unknown quant scheme '{quant_scheme}' (known: {', '.join(schemes)})")
    return QuantizationSimModel(net, _dummy(inputs), quant_scheme=schemes[quant_scheme],
                                default_output_bw=8, default_param_bw=8, config_file=str(config_path))


def calibrate(sim, inputs, batch_size=64):
    """compute_encodings on real inputs: a tuple of tensors with one row per beat, the (N, 1, H,
    W) float images and, for an RR model, their (N, k) RR features (calibration_inputs)."""

    def forward(model, _):
        model.eval()
        with torch.no_grad():
            for start in range(0, len(inputs[0]), batch_size):
                model(*(t[start:start + batch_size] for t in inputs))

    sim.compute_encodings(forward, None)


def calibration_inputs(data, n, seed=0):
    """n training images drawn at random (fixed seed), so classes appear in their training
    proportions: the tuple (images,) or, for a dataset with RR features, (images, rr) of the same beats."""
    if n < 64:
        raise UserError(f"qat.calibration_images = {n}: at least 64 calibration images are needed")
    if len(data) < n:
        raise UserError(f"{data.root}: {len(data)} images, fewer than the {n} calibration images asked for "
                        "(lower qat.calibration_images)")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    images = as_batch(data.images[idx])
    return (images,) if data.rr is None else (images, data.rr[idx])


def weight_ranges(net, layer):
    try:
        w = net.get_submodule(layer).weight.detach()
    except AttributeError:
        raise UserError(f"qat.boxplot_layer '{layer}' is not a layer with weights") from None
    return w.reshape(w.shape[0], -1).cpu().numpy()


def plot_weight_ranges(path, before, after, layer):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(max(8, before.shape[0] * 0.25), 7), sharex=True)
    for ax, w, title in ((axes[0], before, "before CLE"), (axes[1], after, "after CLE + BN folding")):
        ax.boxplot(list(w), showfliers=True)
        ax.set(ylabel="weight", title=f"{layer}: per-output-channel weight ranges, {title}")
        ax.grid(alpha=0.3)
    axes[1].set_xlabel("output channel")
    fig.tight_layout()
    files.save_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), suffix=".png")
    plt.close(fig)


def save_encodings(sim, path):
    path = Path(path)
    act, params = sim.get_activation_param_encodings()
    files.write_text(path, json.dumps({"activation_encodings": act, "param_encodings": params}, indent=1,
                                      default=_plain))


def _plain(o):
    if isinstance(o, (np.generic,)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)
