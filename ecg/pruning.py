"""Stage 5: L1-magnitude channel pruning with torch-pruning, and honest before/after figures."""
import os
import tempfile

import torch
import torch_pruning as tp

from .errors import UserError


def prune(model, ratio=0.5, round_to=None, input_size=100):
    """Remove `ratio` of the channels of every prunable conv group, ranked by the L1 norm of
    their weights (p=1, as the thesis describes; torch-pruning's default is L2). The final
    classifier Linear keeps its outputs (one per class)."""
    if not 0 < ratio < 1:
        raise UserError(f"pruning ratio {ratio} is outside (0, 1)")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise UserError("the model has no conv layers to prune")
    example = torch.zeros(1, 1, input_size, input_size)
    pruner = tp.pruner.BasePruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=[_classifier(model)], round_to=round_to)
    model.eval()
    pruner.step()
    return model


def _classifier(model):
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not last:
        raise UserError("the model has no Linear classifier")
    return last[-1]


def size_figures(model, input_size=100):
    """Parameters and MACs (torch-pruning's own count) for one 1x1xHxW image, and the size on
    disk of the weights-only file."""
    model.eval()
    macs, params = tp.utils.count_ops_and_params(model, torch.zeros(1, 1, input_size, input_size))
    fd, tmp = tempfile.mkstemp(suffix=".pth")
    os.close(fd)
    try:
        torch.save(model.state_dict(), tmp)
        size = os.path.getsize(tmp)
    finally:
        os.unlink(tmp)
    return {"params": int(params), "macs": int(macs), "file_bytes": size}
