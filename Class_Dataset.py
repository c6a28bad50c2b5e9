"""The thesis' dataset module: scalogram split folders, decoded once into memory (see ecg/dataset.py)."""
from ecg.dataset import ScalogramDataset, batches  # noqa: F401
