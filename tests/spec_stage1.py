"""A plain, literal implementation of the thesis' stage 1 (docs/design.md), one beat at a time as the thesis does it.

It shares no code with the `ecg` package on purpose: tests compare the package against it
pixel by pixel, and bench/bench_preprocessing.py times it as the baseline.
"""
import os

import cv2
import numpy as np
import pywt
import wfdb
from scipy.signal import medfilt

INVALID = ['|', '~', '!', '+', '[', ']', '"', 'x', 'e', 'j', 'S', 'J', 'a', 'E', 'F', 'Q', 'f']
CLASSES = [  # (class, records, symbol)
    ("0", ["102", "104", "105", "106", "114", "116"], "N"),
    ("1", ["109", "111", "207", "214"], "L"),
    ("2", ["118", "124", "212", "231", "232", "207"], "R"),
    ("3", ["105", "106", "107", "114", "116", "119", "203", "207", "208", "210", "213", "214",
           "215", "221", "228", "233"], "V"),
    ("4", ["102", "104", "107", "217"], "/"),
]


def process_record(path, record, out):
    """Write the thesis' stage-1 PNGs of one record into out/<class>/; return [(relpath, sample, symbol)]."""
    signal = wfdb.rdrecord(os.path.join(path, record), channels=[0]).p_signal[:, 0]
    ann = wfdb.rdann(os.path.join(path, record), "atr")
    fs = 360
    baseline = medfilt(medfilt(signal, int(0.2 * fs) - 1), int(0.6 * fs) - 1)
    filtered = signal - baseline
    peaks, symbols = [], []
    for s, sym in zip(ann.sample, ann.symbol):
        if sym not in INVALID:
            peaks.append(s)
            symbols.append(sym)
    w = int(0.05 * fs)
    aligned = []
    for r in peaks:
        left, right = max(r - w, 0), min(r + w, len(filtered))
        aligned.append(left + np.argmax(filtered[left:right]))
    normalized = filtered / np.mean(filtered[np.array(aligned)])
    beats = []
    for cls, recs, symbol in CLASSES:
        if record in recs:
            for r, sym in zip(aligned, symbols):
                if sym == symbol and r - 90 >= 0 and r + 110 < len(normalized):
                    beats.append((cls, r, sym, normalized[r - 90:r + 110]))
    scales = pywt.central_frequency("mexh") * fs / np.arange(1, 101)
    written = []
    for i, (cls, r, sym, beat) in enumerate(beats):
        coef, _ = pywt.cwt(beat, scales, "mexh")
        s = np.abs(coef)
        s -= s.min()
        s /= s.max() + 1e-6
        s *= 255
        img = cv2.resize(s.astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
        os.makedirs(os.path.join(out, cls), exist_ok=True)
        rel = f"{cls}/{record}_{cls}_{i}.png"
        cv2.imwrite(os.path.join(out, rel), img)
        written.append((rel, int(r), sym))
    return written
