"""EfficientNet-B0 with one input channel (the thesis model, docs/design.md stage 3), and its weights-only file format."""
import copy
from pathlib import Path

import torch
from torch import nn
from torchvision.models import efficientnet_b0

from . import files
from .errors import UserError

FORMAT = "ecg-scalogram-model/1"


RR_HIDDEN = 32  # width of the RR features' own layer before the fusion


class RRFusionNet(nn.Module):
    """EfficientNet-B0 image features fused with a beat's RR-interval features.

    The RR features are standardised inside the model with the training split's mean and
    standard deviation (buffers, so they travel in the state dict and the ONNX export: the
    device feeds raw seconds), lifted by one small layer so that 7 numbers are not drowned
    by 1,280 image features, and concatenated with the pooled image features before the
    classifier. The image path is torchvision's, module names included (features.*,
    classifier.*), so pruning and quantization treat it as they treat the image-only model.
    """

    def __init__(self, num_classes, n_rr, rr_mean=None, rr_std=None, arch="efficientnet_b0", in_channels=1,
                 image_input="as_is"):
        super().__init__()
        if image_input not in IMAGE_INPUTS:
            raise UserError(f"model.image_input = '{image_input}': expected one of {', '.join(IMAGE_INPUTS)}")
        if image_input == "difference" and in_channels != 2:
            raise UserError("model.image_input = 'difference' needs images with the template channel "
                            "(preprocess.template_channel = true)")
        # difference: the network sees only beat - template (2 channels in, 1 into the stem): a
        # normal beat of any patient looks alike, whatever the patient's own shape
        self.difference = image_input == "difference"
        base = build_model(num_classes, arch, in_channels=1 if self.difference else in_channels)
        self.features, self.avgpool = base.features, base.avgpool
        self.register_buffer("rr_mean", torch.zeros(n_rr) if rr_mean is None else torch.as_tensor(rr_mean).float())
        self.register_buffer("rr_std", torch.ones(n_rr) if rr_std is None else torch.as_tensor(rr_std).float())
        self.rr_layer = nn.Sequential(nn.Linear(n_rr, RR_HIDDEN), nn.ReLU(inplace=True))
        width = base.classifier[1].in_features
        self.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True), nn.Linear(width + RR_HIDDEN, num_classes))

    def forward(self, image, rr):
        if self.difference:
            image = image[:, 0:1] - image[:, 1:2]
        x = torch.flatten(self.avgpool(self.features(image)), 1)
        r = self.rr_layer((rr - self.rr_mean) / self.rr_std)
        return self.classifier(torch.cat([x, r], 1))


ARCHS = ("efficientnet_b0", "small_cnn")
IMAGE_INPUTS = ("as_is", "difference")
SMALL_CNN_WIDTHS = (16, 32, 64, 128)


class SmallCNN(nn.Module):
    """Four stride-2 3x3 Conv-BatchNorm-ReLU blocks (100 -> 7 pixels), global average pooling and
    a linear classifier: a network this CPU can cross-validate with (model.arch = "small_cnn";
    Wang 2021 used three convolutions on the same scalograms). Module names follow torchvision's
    EfficientNet (features, avgpool, classifier), so the RR fusion, pruning, AIMET's CLE / BN
    folding and the exports take it as they take EfficientNet-B0."""

    def __init__(self, num_classes, in_channels=1):
        super().__init__()
        blocks, c_in = [], in_channels
        for c in SMALL_CNN_WIDTHS:
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c),
                                        nn.ReLU(inplace=True)))
            c_in = c
        self.features = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True), nn.Linear(c_in, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def build_model(num_classes, arch="efficientnet_b0", rr_features=None, in_channels=1, image_input="as_is"):
    """The thesis' one-channel EfficientNet-B0 (or model.arch = "small_cnn"), or with
    `rr_features` (names) the fusion with the per-beat features; `in_channels` 2 for images of
    the beat and the patient's running template (preprocess.template_channel)."""
    if arch not in ARCHS:
        raise UserError(f"unknown architecture '{arch}' (expected one of {', '.join(ARCHS)})")
    if rr_features:
        return RRFusionNet(num_classes, len(rr_features), arch=arch, in_channels=in_channels, image_input=image_input)
    if image_input != "as_is":
        raise UserError(f"model.image_input = '{image_input}' needs a model with per-beat features (model.rr_features)")
    if arch == "small_cnn":
        return SmallCNN(num_classes, in_channels)
    model = efficientnet_b0(weights=None)
    model.features[0][0] = nn.Conv2d(in_channels, 32, kernel_size=3, stride=2, padding=1, bias=False)
    model.classifier[1] = nn.Linear(model.classifier[1].in_features, num_classes)
    return model


def rr_statistics(rr):
    """Per-feature mean and standard deviation of a training split's RR features (a tensor)."""
    std = rr.double().std(0)
    return rr.double().mean(0).tolist(), torch.where(std > 0, std, torch.ones_like(std)).tolist()


def standardise_rr(net, rr):
    """Store the training split's RR feature statistics in the model's buffers (rr_mean, rr_std),
    which standardise its raw RR input; the training split's only, so no test beat leaks in."""
    mean, std = rr_statistics(rr)
    net.rr_mean.copy_(torch.tensor(mean))
    net.rr_std.copy_(torch.tensor(std))


def rr_feature_names(cfg):
    """The per-beat features a model built from `cfg` takes, in input order (config
    model.rr_features, then model.morph_features), or None."""
    from jetson.morphology import FEATURES as MORPH
    from jetson.rr_features import FEATURES

    m = cfg["model"]
    if m.get("morph_features") and not m["rr_features"]:
        raise UserError("model.morph_features needs model.rr_features: the morphology features follow the RR "
                        "features in the model's one feature input")
    return (list(FEATURES) + (list(MORPH) if m.get("morph_features") else [])) if m["rr_features"] else None


def example_inputs(meta, batch=1):
    """Zero inputs of the right shapes for a model described by `meta` (tracing, export, pruning)."""
    x = torch.zeros(batch, *meta["input_size"])
    return (x, torch.zeros(batch, len(meta["rr_features"]))) if meta.get("rr_features") else (x,)


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


def save(path, state_dict, classes, input_size=100, arch="efficientnet_b0", shapes=None, rr_features=None,
         channels=1, image_input="as_is", **extra):
    """State dict + what is needed to rebuild the model (for a pruned model, its layer shapes;
    for an RR model, the feature names — their normalisation is in the state dict's rr_mean and
    rr_std, copied here in plain numbers for readers); loads with weights_only=True."""
    blob = {"format": FORMAT, "arch": arch, "classes": list(classes), "input_size": [channels, input_size, input_size],
            "state_dict": snapshot(state_dict), **extra}
    if rr_features:
        blob["rr_features"] = list(rr_features)
        blob["rr_mean"] = state_dict["rr_mean"].tolist()
        blob["rr_std"] = state_dict["rr_std"].tolist()
    if shapes is not None:
        blob["layer_shapes"] = shapes
    if image_input != "as_is":   # only when used: older files stay as they were
        blob["image_input"] = image_input
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
    model = build_model(len(blob["classes"]), blob["arch"], blob.get("rr_features"), blob["input_size"][0],
                        blob.get("image_input", "as_is"))
    if "layer_shapes" in blob:
        _rebuild(model, blob["layer_shapes"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit {blob['arch']} ({str(e).splitlines()[0]})") from None
    return model, blob


def snapshot(state_dict):
    """A CPU copy of a state dict; AIMET's quantizers add non-tensor extra state, kept as is."""
    return {k: v.detach().cpu().clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in state_dict.items()}
