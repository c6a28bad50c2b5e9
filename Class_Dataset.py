"""The dataset, as the numbered scripts use it (the thesis layout's dataset module).

A split folder (root/<class>/*.png, stage 2) decoded once into memory: the thesis' 1-channel
scalograms, or 2-channel ones (the beat and the patient's running template), with each beat's
RR / morphology features from the folder's manifest.csv when the model takes them. The
definitions live in ecg/dataset.py; this module is the one door the scripts open to them:

    ScalogramDataset(root, classes=None, rr_features=None)   .images, .targets, .rr, .classes
    batches(dataset, batch_size, ...)                        (x, y) batches from memory
    as_batch(images)                                         stored uint8 -> the model's float input
    channels(image)                                          1, or 2 with the template channel
"""
from ecg.dataset import ScalogramDataset, as_batch, batches, channels, take  # noqa: F401
