"""Stage 6: AIMET cross-layer equalization, batch-norm folding and a W8A8 QuantizationSimModel
that TensorRT can run (symmetric signed int8 activations, per-channel symmetric weights).
The ONNX exports of the result are in onnx_export.py."""
import json
from pathlib import Path

import numpy as np
import torch

from . import files
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


def write_config(folder):
    path = Path(folder) / "aimet_trt_config.json"
    files.write_text(path, json.dumps(TRT_CONFIG, indent=2))
    return path


def equalize_and_fold(net, input_size=100):
    """CLE (which folds batch norms first), then fold whatever batch norms remain. In place."""
    import_aimet()
    from aimet_torch.batch_norm_fold import fold_all_batch_norms
    from aimet_torch.cross_layer_equalization import equalize_model

    net.eval()
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    dummy = torch.zeros(1, 1, input_size, input_size)
    equalize_model(net, dummy_input=dummy)
    fold_all_batch_norms(net, input_shapes=(1, 1, input_size, input_size))
    left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    return {"batch_norms": n_bn, "batch_norms_left": left}


def sim_model(net, config_path, quant_scheme="tf_enhanced", input_size=100):
    aimet = import_aimet()
    from aimet_torch.quantsim import QuantizationSimModel

    schemes = {"tf_enhanced": aimet.common.defs.QuantScheme.post_training_tf_enhanced,
               "tf": aimet.common.defs.QuantScheme.post_training_tf}
    if quant_scheme not in schemes:
        raise UserError(f"unknown quant scheme '{quant_scheme}' (known: {', '.join(schemes)})")
    return QuantizationSimModel(net, torch.zeros(1, 1, input_size, input_size), quant_scheme=schemes[quant_scheme],
                                default_output_bw=8, default_param_bw=8, config_file=str(config_path))


def calibrate(sim, images, batch_size=64):
    """compute_encodings on real images (a (N, 1, H, W) float tensor)."""

    def forward(model, _):
        model.eval()
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(images[start:start + batch_size])

    sim.compute_encodings(forward, None)


def calibration_images(data, n, seed=0):
    """n training images drawn at random (fixed seed), so classes appear in their training proportions."""
    if n < 64:
        raise UserError(f"qat.calibration_images = {n}: at least 64 calibration images are needed")
    if len(data) < n:
        raise UserError(f"{data.root}: {len(data)} images, fewer than the {n} calibration images asked for "
                        "(lower qat.calibration_images)")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return data.images[idx].unsqueeze(1).float().div(255)


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
