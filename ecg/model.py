"""EfficientNet-B0 with one input channel (SPEC stage 3), and its weights-only file format."""
from pathlib import Path

import torch
from torch import nn
from torchvision.models import efficientnet_b0

from . import files
from .training import snapshot
from .errors import UserError

FORMAT = "ecg-scalogram-model/1"


def build_model(num_classes, arch="efficientnet_b0"):
    if arch != "efficientnet_b0":
        raise UserError(f"unknown architecture '{arch}'")
    model = efficientnet_b0(weights=None)
    model.features[0][0] = nn.Conv2d(1, 32, kernel_size=3, stride=2, padding=1, bias=False)
    model.classifier[1] = nn.Linear(model.classifier[1].in_features, num_classes)
    return model


def layer_shapes(model):
    """Plain description (ints and bools only) of every conv, batch-norm and linear layer, enough
    to rebuild a model whose channels were pruned without pickling the model object."""
    shapes = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            shapes[name] = ["conv", m.in_channels, m.out_channels, list(m.kernel_size), list(m.stride),
                            list(m.padding), list(m.dilation), m.groups, m.bias is not None]
        elif isinstance(m, nn.BatchNorm2d):
            shapes[name] = ["bn", m.num_features, m.eps, m.momentum]
        elif isinstance(m, nn.Linear):
            shapes[name] = ["linear", m.in_features, m.out_features, m.bias is not None]
    return shapes


def _rebuild(model, shapes):
    for name, spec in shapes.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        kind, *a = spec
        if kind == "conv":
            new = nn.Conv2d(a[0], a[1], tuple(a[2]), tuple(a[3]), tuple(a[4]), tuple(a[5]), a[6], a[7])
        elif kind == "bn":
            new = nn.BatchNorm2d(a[0], eps=a[1], momentum=a[2])
        else:
            new = nn.Linear(a[0], a[1], a[2])
        setattr(parent, child, new)
    return model


def save(path, state_dict, classes, input_size=100, arch="efficientnet_b0", shapes=None, **extra):
    """State dict + what is needed to rebuild the model (for a pruned model, its layer shapes);
    loads with weights_only=True."""
    blob = {"format": FORMAT, "arch": arch, "classes": list(classes), "input_size": [1, input_size, input_size],
            "state_dict": snapshot(state_dict), **extra}
    if shapes is not None:
        blob["layer_shapes"] = shapes
    files.save_with(path, lambda tmp: torch.save(blob, tmp))


def load_file(path):
    """Read one of our model files without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: not a model file of this pipeline (refused to load: "
                        f"{str(e).splitlines()[0][:150]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise UserError(f"{path}: not a model file of this pipeline (no '{FORMAT}' marker)")
    return blob


def load(path):
    """(model, metadata) from a file written by save()."""
    blob = load_file(path)
    model = build_model(len(blob["classes"]), blob["arch"])
    if "layer_shapes" in blob:
        _rebuild(model, blob["layer_shapes"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit {blob['arch']} ({str(e).splitlines()[0]})") from None
    return model, blob
