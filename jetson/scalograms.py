"""Stage-1 preprocessing on the device, without PyWavelets: the CWT is the precomputed operator
file (cwt_operator.npz) that 7_AIMET_onnx.py writes. Python 3.6+, numpy, scipy, OpenCV, wfdb.

Same steps and numbers as the pipeline's stage 1 (the tests compare the pixels): baseline by
two median filters, annotation filtering, R-peak alignment, amplitude normalisation, 200-sample
windows, |CWT| scaled to uint8 per image, bicubic resize to 100x100. Unlike stage 1 it labels
every annotated beat, not only those of the training classes.
"""
import numpy as np

from common import DeviceError


def load_operator(path):
    try:
        z = np.load(path)
        op = {k: z[k] for k in z.files}
    except (IOError, OSError, ValueError) as e:
        raise DeviceError("{}: not a CWT operator file ({})".format(path, e))
    if "operator" not in op:
        raise DeviceError("{}: not a CWT operator file (no 'operator' array)".format(path))
    return op


def read_record(path, fs_expected, lead=0):
    try:
        import wfdb
    except ImportError:
        raise DeviceError("record input needs the wfdb package (pip3 install wfdb)")
    try:
        header = wfdb.rdheader(path)
    except Exception as e:
        raise DeviceError("{}.hea: cannot read the record header ({})".format(path, e))
    if header.fs != fs_expected:
        raise DeviceError("{}.hea: sampling rate {:g} Hz, the model expects {:g} Hz".format(path, header.fs, fs_expected))
    try:
        x = wfdb.rdrecord(path, channels=[lead]).p_signal[:, 0]
        ann = wfdb.rdann(path, "atr")
    except Exception as e:
        raise DeviceError("{}: cannot read the record and its .atr beat annotations ({})".format(path, e))
    return x, np.asarray(ann.sample, dtype=np.int64), np.asarray(ann.symbol)


def beats_of_record(x, samples, symbols, op):
    """Aligned R peaks, their annotation symbols and the normalised 200-sample windows."""
    from scipy.signal import medfilt

    fs = float(op["fs"])
    baseline = x
    for w in op["baseline_windows_s"]:
        n = int(float(w) * fs) - 1
        baseline = medfilt(baseline, n if n % 2 else n + 1)
    filtered = x - baseline
    keep = ~np.isin(symbols, list(op["invalid_symbols"]))
    samples, symbols = samples[keep], symbols[keep]
    half = int(float(op["align_halfwidth_s"]) * fs)
    peaks = np.empty_like(samples)
    for i, r in enumerate(samples):
        left, right = max(r - half, 0), min(r + half, len(filtered))
        peaks[i] = left + np.argmax(filtered[left:right])
    if len(peaks) == 0:
        raise DeviceError("the record has no beat annotations to classify")
    normalized = filtered / np.mean(filtered[peaks])
    before, after = int(op["before"]), int(op["after"])
    ok = (peaks - before >= 0) & (peaks + after < len(normalized))
    peaks, symbols = peaks[ok], symbols[ok]
    if len(peaks) == 0:
        raise DeviceError("the record has no complete beat window ({} samples before and {} after R)".format(
            before, after))
    windows = normalized[peaks[:, None] + np.arange(-before, after)[None, :]]
    return peaks, symbols, windows


def images(windows, op, batch=128):
    """uint8 (B, size, size) scalograms of (B, 200) windows."""
    import cv2

    matrix, size = op["operator"], int(op["image_size"])
    n = windows.shape[1]
    out = np.empty((len(windows), size, size), np.uint8)
    for start in range(0, len(windows), batch):
        s = np.abs(windows[start:start + batch] @ matrix).reshape(-1, matrix.shape[1] // n, n)
        s -= s.min(axis=(1, 2), keepdims=True)
        s /= s.max(axis=(1, 2), keepdims=True) + 1e-6
        s *= 255
        u8 = np.ascontiguousarray(s.astype(np.uint8))
        b, h, w = u8.shape
        if h == size:  # one resize for the whole batch: with a vertical scale of 1 rows never mix
            resized = cv2.resize(u8.reshape(b * h, w), (size, b * h), interpolation=cv2.INTER_CUBIC)
            out[start:start + b] = resized.reshape(b, size, size)
        else:
            out[start:start + b] = [cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC) for im in u8]
    return out
