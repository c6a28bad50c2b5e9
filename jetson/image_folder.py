"""--images: a folder laid out like test_images/<class>/*.png (stage 2's test folder) classified
-> accuracy, confusion matrix, per-class Se / +P / F1 (scoring.Confusion, as records are scored),
latency p50/p90/p99 at batch 1 and throughput at --batch. Python 3.6+, numpy, OpenCV.
"""
import os
import time

import numpy as np

from .common import DeviceError
from .runners import rr_or_error, to_input
from .scoring import Confusion


def class_key(name):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def load_folder(root, shape):
    """uint8 images and folder labels of root/<class>/*.png; wrong sizes are errors."""
    import cv2

    if not os.path.isdir(root):
        raise DeviceError("{}: image folder not found".format(root))
    folders = sorted([d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))], key=class_key)
    images, labels = [], []
    for cls in folders:
        for name in sorted(os.listdir(os.path.join(root, cls))):
            if not name.endswith(".png"):
                continue
            path = os.path.join(root, cls, name)
            img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise DeviceError("{}: not a readable PNG".format(path))
            if img.shape != tuple(shape[1:]):
                raise DeviceError("{}: image is {}x{}, the model takes {}x{}".format(
                    path, img.shape[1], img.shape[0], shape[2], shape[1]))
            images.append(img)
            labels.append(cls)
    if not images:
        raise DeviceError("{}: no PNG images in <class>/ folders".format(root))
    return np.stack(images), labels


def timing(run, x, batch, repeats):
    one = x[:1]
    for _ in range(5):
        run(one)
    lat = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(one)
        lat.append((time.perf_counter() - t0) * 1000)
    big = np.repeat(x[:1], batch, axis=0) if len(x) < batch else x[:batch]
    run(big)
    t0 = time.perf_counter()
    reps = max(3, repeats // 20)
    for _ in range(reps):
        run(big)
    return np.percentile(lat, [50, 90, 99]), batch * reps / (time.perf_counter() - t0)


def classify_folder(run, root, batch, repeats):
    """Classify every image of root/<class>/*.png and print the scores and the speed; returns the accuracy."""
    rr_or_error(None, run.features)
    if tuple(run.shape)[0] != 1:
        raise DeviceError("the model takes {} image channels (the beat and the patient's running template), which a "
                          "folder of single images does not have: classify a record or CSV instead".format(
                              tuple(run.shape)[0]))
    u8, folder_labels = load_folder(root, run.shape)
    classes = run.classes or sorted(set(folder_labels), key=class_key)
    unknown = sorted(set(folder_labels) - set(classes), key=class_key)
    if unknown:
        raise DeviceError("{}: class folders {} are not among the model's classes {}".format(root, unknown, classes))
    x = to_input(u8)
    pred = np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)]).argmax(1)
    confusion = Confusion(classes)
    confusion.add_indices([classes.index(c) for c in folder_labels], pred)
    score = confusion.summary()
    f1 = [score["per_class"][c]["f1"] or 0.0 for c in classes]
    (p50, p90, p99), ips = timing(run, x, batch, repeats)
    print("images     {}  accuracy {:.4f}  macro F1 {:.4f}".format(len(pred), score["accuracy"], float(np.mean(f1))))
    print("confusion matrix (rows: true, columns: predicted)")
    print("        " + "".join("{:>8}".format(c) for c in classes))
    for c, row in zip(classes, score["confusion"]):
        print("{:>8}".format(c) + "".join("{:>8d}".format(v) for v in row))
    print("F1       " + "  ".join("{}: {:.4f}".format(c, v) for c, v in zip(classes, f1)))
    print("latency    batch 1: p50 {:.2f} ms, p90 {:.2f} ms, p99 {:.2f} ms".format(p50, p90, p99))
    print("throughput batch {}: {:.1f} images/s".format(batch, ips))
    return score["accuracy"]
