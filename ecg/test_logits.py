"""The stage 6 -> 7 reference file ([artifacts] test_logits): the test set's logits of the float
PyTorch model and of the QAT simulation, with the targets, the image paths and the split id they
were computed on. Stage 6 writes it (save); stage 7 reads it back only for the same test set
(load), to check that every ONNX file computes what its PyTorch source does."""
import numpy as np

from . import files, split
from .errors import UserError


def save(path, float_logits, qat_logits, data, test_dir):
    files.save_with(path, lambda tmp: np.savez(
        tmp, float=float_logits.numpy(), qat=qat_logits.numpy(), targets=data.targets.numpy(),
        paths=np.array([str(p) for p in data.paths]), split_id=np.array(split.split_id(test_dir) or "")),
        suffix=".npz")


def load(path, data, test_dir):
    """{"PyTorch float": logits, "AIMET sim": logits} of the test set `data` (from `test_dir`),
    or a UserError when the file is missing or was made on another test set."""
    if not path.is_file():
        raise UserError(f"{path}: missing (written by 6_AIMET_quantization.py)")
    ref = np.load(path)
    if [str(p) for p in data.paths] != [str(p) for p in ref["paths"]]:
        raise UserError(f"{test_dir}: not the test set stage 6 evaluated; re-run 6_AIMET_quantization.py")
    # the same file names can hold other beats after stages 1-2 are re-run: the split id tells
    if "split_id" in ref.files and str(ref["split_id"]) != (split.split_id(test_dir) or ""):   # older files: no id
        raise UserError(f"{test_dir}: made by another run of stage 2 than the one stage 6 evaluated; "
                        "re-run 6_AIMET_quantization.py")
    return {"PyTorch float": ref["float"], "AIMET sim": ref["qat"]}
