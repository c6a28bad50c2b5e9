"""Stage-1 scalograms on the device, without PyWavelets: the CWT is the precomputed operator
file (cwt_operator.npz) that 7_AIMET_onnx.py writes. Python 3.6+, numpy, OpenCV.

The steps before the CWT (baseline by two median filters, R-peak alignment, amplitude
normalisation, 200-sample windows) live in streaming.py, which runs them on whole records and on
streams; with the record's annotations and --normalise record they give stage 1's images pixel
for pixel (tests/test_jetson.py). Here: |CWT| scaled to uint8 per image, bicubic resize to 100x100.
"""
import zipfile

import numpy as np

from .common import DeviceError


def operator_matrix(kernels):
    """The (n, n_scales*n) CWT matrix from its compact form (ecg/scalogram.py operator_kernels):
    entry (k, s, t) is kernels[s, t - k + n - 1]. Indexing only, so bit for bit the stored numbers."""
    n = (kernels.shape[1] + 1) // 2
    idx = np.arange(n)[None, :] - np.arange(n)[:, None] + n - 1
    return np.ascontiguousarray(kernels[:, idx].transpose(1, 0, 2)).reshape(n, -1)


def load_operator(path):
    try:
        with np.load(path) as z:
            op = {k: z[k] for k in z.files}
        if "operator" not in op and "operator_kernels" in op:
            op["operator"] = operator_matrix(op["operator_kernels"])   # the compact form (0.3 MB, not 32)
    except (IOError, OSError, ValueError, IndexError, AttributeError, TypeError, EOFError, KeyError,
            zipfile.BadZipFile) as e:  # TypeError: a .npy; BadZipFile/EOFError: a truncated file
        raise DeviceError("{}: not a readable CWT operator file (truncated or corrupt? {})".format(path, e))
    if "operator" not in op:
        raise DeviceError("{}: not a CWT operator file (no 'operator' array)".format(path))
    return op


SMALL = 16   # fewer windows than this: the CWT by FFT (a stream's one or two beats per chunk)


def kernels_of(op):
    """The operator's per-scale kernels (n_scales, 2n-1): stored (compact files) or read off the matrix."""
    if "operator_kernels" in op:
        return op["operator_kernels"]
    matrix = op["operator"]
    n = matrix.shape[0]
    op3 = matrix.reshape(n, -1, n)
    return np.concatenate([op3[::-1, :, 0].T, op3[0, :, 1:]], axis=1)


def cwt_by_fft(windows, op):
    """(B, n_scales, n) = (windows @ operator) reshaped, computed as one full convolution per scale
    through the FFT: ~100x fewer operations than the matrix product for one window, which
    otherwise reads the whole 32 MB operator for each beat of a stream. Equal to the product up
    to rounding (~1e-15 relative), so a pixel could differ only where a value lies that close to
    an integer step of the uint8 image."""
    n = windows.shape[1]
    # the full convolution has 3n - 2 terms; we keep n - 1 .. 2n - 2, which a circular one of size
    # 2n leaves unaliased (their aliases, 2n away, lie outside 0 .. 3n - 3)
    size = 2 * n
    if op.get("_fft_size") != size:
        op["_kernels_fft"], op["_fft_size"] = np.fft.rfft(kernels_of(op), size), size
    full = np.fft.irfft(np.fft.rfft(windows, size)[:, None, :] * op["_kernels_fft"][None], size)
    return full[:, :, n - 1:2 * n - 1]


def beat_images(windows, op, n, with_template):
    """The model's images of n beats: `windows` (n, 200), or with the template channel (2n, 200),
    the beats then their templates, as (n, 2, size, size): a stream's few by FFT in one call,
    more by the operator product, one per set as stage 1 makes them."""
    if not with_template:
        return images(windows, op)
    if len(windows) < SMALL:
        both = images(windows, op)
        return np.stack([both[:n], both[n:]], axis=1)
    return np.stack([images(windows[:n], op), images(windows[n:], op)], axis=1)


def images(windows, op, batch=128):
    """uint8 (B, size, size) scalograms of (B, 200) windows: stage 1's CWT (the operator matrix;
    by FFT for fewer than SMALL windows), |CWT| min-max scaled per image, resized bicubic."""
    import cv2

    size, n = int(op["image_size"]), windows.shape[1]
    if "operator" not in op and len(windows) >= SMALL:   # an operator sent as its kernels (overlap.py)
        op["operator"] = operator_matrix(op["operator_kernels"])
    matrix = op.get("operator")
    out = np.empty((len(windows), size, size), np.uint8)
    for start in range(0, len(windows), batch):
        w = windows[start:start + batch]
        s = np.abs(cwt_by_fft(w, op) if len(w) < SMALL else (w @ matrix).reshape(-1, matrix.shape[1] // n, n))
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
