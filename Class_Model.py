"""The thesis' model module: EfficientNet-B0 with a 1-channel stem (see ecg/model.py)."""
from ecg.model import RRFusionNet, build_model, load, save  # noqa: F401
