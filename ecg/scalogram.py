"""Beats to 100x100 grayscale CWT scalograms (docs/design.md, stage 1, step 7), exactly and in batches.

The thesis calls pywt.cwt once per beat. For a fixed beat length and fixed scales that CWT is a
linear map, so here it is one float64 matrix (built by applying pywt.cwt to the unit vectors)
and a batch of beats is one matrix product: same numbers to ~1e-13, same uint8 pixels.
Float32 would not be exact (some pixels move by 1).
"""
import functools
import inspect
import struct
import zlib

import cv2
import numpy as np
import pywt

EPS = 1e-6
# pywt.cwt's default sampling of the integrated wavelet (2**12 points in PyWavelets >= 1.8);
# read from its signature so the operator follows the installed version.
PRECISION = inspect.signature(pywt.cwt).parameters["precision"].default


def scales(fs=360, freq_min=1, freq_max=100, wavelet="mexh"):
    """Scales whose pseudo-frequencies are freq_min..freq_max Hz (thesis: 1..100 Hz)."""
    return pywt.central_frequency(wavelet) * fs / np.arange(freq_min, freq_max + 1)


@functools.lru_cache(maxsize=4)
def cwt_operator(n, scales_key, wavelet="mexh"):
    """(n, n_scales*n) float64 matrix M with beat @ M == pywt.cwt(beat, scales, wavelet) flattened.

    Entry (k, s, t) is pywt.cwt's coefficient at scale s, time t of the unit vector e_k. pywt
    gets it by convolving e_k with the sampled integrated wavelet f, differencing and trimming;
    convolving a unit vector only shifts f, so the entry is -sqrt(s) * (f[m+1] - f[m]) with
    m = t + floor(d) - k, computed here directly with the same float operations (the tests
    check it bit for bit against pywt.cwt of the identity matrix, which takes 0.4 s).
    """
    wav = pywt.ContinuousWavelet(wavelet)
    int_psi, x = pywt.integrate_wavelet(wav, precision=PRECISION)
    int_psi, x = np.asarray(int_psi, np.float64), np.asarray(x, np.float64)
    if np.iscomplexobj(int_psi):
        raise ValueError("complex wavelets are not supported")
    step = x[1] - x[0]
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    op = np.empty((n, len(scales_key), n))
    for i, scale in enumerate(scales_key):
        j = (np.arange(scale * (x[-1] - x[0]) + 1) / (scale * step)).astype(int)
        j = j[j < int_psi.size]
        f = int_psi[j][::-1]
        d = (len(f) - 2) / 2.0
        if d < 0:
            raise ValueError(f"scale {scale} too small")
        shift = int(np.floor(d)) if d > 0 else 0
        m = t + shift - k  # index into f of conv[t + shift] for the unit vector e_k
        pad = np.concatenate([np.zeros(n + 1), f, np.zeros(n + shift + 2)])
        at = m + n + 1  # position of f[m] inside pad
        op[:, i, :] = -np.sqrt(scale) * (pad[at + 1] - pad[at])
    return op.reshape(n, len(scales_key) * n)


def cwt_operator_reference(n, scales_key, wavelet="mexh"):
    """The same matrix by brute force: pywt.cwt of each unit vector (slow; for tests)."""
    unit = pywt.cwt(np.eye(n), np.asarray(scales_key), wavelet, axis=-1)[0]  # (scale, k, t)
    return np.ascontiguousarray(unit.transpose(1, 0, 2).reshape(n, len(scales_key) * n))


@functools.lru_cache(maxsize=4)
def _blocks(n, scales_key, wavelet, tile=50):
    """The operator cut into (scale, output tile) blocks, each keeping only its non-zero rows.

    A wavelet at a small scale touches few samples, so ~3/4 of the operator is zeros; the
    blocks skip them. Skipped terms are exact zeros, so results are unchanged.
    """
    n_scales = len(scales_key)
    op = cwt_operator(n, scales_key, wavelet).reshape(n, n_scales, n)
    blocks = []
    for s in range(n_scales):
        for t0 in range(0, n, tile):
            blk = op[:, s, t0:t0 + tile]
            rows = np.flatnonzero(blk.any(axis=1))
            if len(rows):
                k0, k1 = rows[0], rows[-1] + 1
                blocks.append((s, t0, t0 + blk.shape[1], k0, k1, np.ascontiguousarray(blk[k0:k1].T)))
    return blocks


def cwt(beats, sc, wavelet="mexh"):
    """CWT coefficients of a (B, n) batch of beats: a (B, n_scales, n) array (a transposed view)."""
    beats_t = np.ascontiguousarray(np.asarray(beats, dtype=np.float64).T)  # (n, B)
    out = np.zeros((len(sc), beats_t.shape[0], beats_t.shape[1]))
    _apply(_blocks(beats_t.shape[0], tuple(sc), wavelet), beats_t, out)
    return out.transpose(2, 0, 1)


def _apply(blocks, beats_t, out):
    for s, t0, t1, k0, k1, blk in blocks:
        np.matmul(blk, beats_t[k0:k1], out=out[s, t0:t1])


class BeatImages:
    """Beats -> uint8 scalograms, the fast path of cwt() + to_images() with identical pixels.

    Buffers are allocated once per batch size and reused (fresh 40 MB arrays per batch cost
    more in page faults than the arithmetic), and the scaling runs scale by scale on slabs
    that stay in cache. max(|c| - min) is computed as max(|c|) - min: rounding is monotonic,
    so it is the same number the thesis' s -= s.min(); s.max() gives.
    """

    def __init__(self, n, sc, wavelet="mexh", size=100):
        self.n, self.size = n, size
        self.blocks = _blocks(n, tuple(sc), wavelet)
        self.n_scales = len(sc)
        covered = np.zeros((self.n_scales, n), bool)
        for s, t0, t1, *_ in self.blocks:
            covered[s, t0:t1] = True
        self.uncovered = np.argwhere(~covered)  # coefficients that are always exactly zero
        self.buffers = {}

    def _buffers(self, b):
        if b not in self.buffers:
            if len(self.buffers) > 2:
                self.buffers.clear()
            S, n = self.n_scales, self.n
            self.buffers[b] = (np.empty((S, n, b)), np.empty((S, n, b), np.uint8), np.empty((b, S, n), np.uint8))
        return self.buffers[b]

    def __call__(self, beats):
        beats_t = np.ascontiguousarray(np.asarray(beats, dtype=np.float64).T)
        b = beats_t.shape[1]
        coef, u8, u8_t = self._buffers(b)
        _apply(self.blocks, beats_t, coef)
        for s, t in self.uncovered:
            coef[s, t] = 0.0
        mn = np.full(b, np.inf)
        mx = np.full(b, -np.inf)
        for slab in coef:
            np.abs(slab, out=slab)
            np.minimum(mn, slab.min(axis=0), out=mn)
            np.maximum(mx, slab.max(axis=0), out=mx)
        den = (mx - mn) + EPS
        for slab, out in zip(coef, u8):
            slab -= mn
            slab /= den
            slab *= 255
            out[...] = slab  # float -> uint8 truncates, as astype does
        u8_t[...] = u8.transpose(2, 0, 1)
        return _resize_stack(u8_t, self.size)


def cwt_in_context(signal, peaks, before, after, sc, wavelet="mexh"):
    """CWT over the whole record, then each beat's columns (option cwt_context = "record").

    Computed exactly on a zero-padded window around each beat that is wider than the longest
    wavelet, which gives the same columns as transforming the whole record at once.
    """
    step = 16  # mexh support [-8, 8]
    pad = int(np.ceil(max(sc) * step)) + 2
    padded = np.concatenate([np.zeros(pad), signal, np.zeros(pad)])
    idx = np.asarray(peaks)[:, None] + np.arange(-before - pad, after + pad)[None, :] + pad
    coef = pywt.cwt(padded[idx], sc, wavelet, axis=-1)[0]  # (scale, B, n + 2 pad)
    return coef[:, :, pad:pad + before + after].transpose(1, 0, 2)


def to_images(coef, size=100):
    """Thesis scaling of |coef| to uint8 (per image min/max, truncation) and bicubic resize.

    Works in place on `coef`. Images are resized in one cv2 call, stacked vertically: with a
    vertical scale of 1 the bicubic kernel never mixes rows, so this equals resizing each image
    on its own. (BeatImages is the faster path for plain beats.)
    """
    s = np.abs(coef, out=coef)
    s -= s.min(axis=(1, 2), keepdims=True)
    s /= s.max(axis=(1, 2), keepdims=True) + EPS
    s *= 255
    return _resize_stack(np.ascontiguousarray(s.astype(np.uint8)), size)


def _resize_stack(u8, size):
    b, h, w = u8.shape
    if h != size:  # rows change too: resize image by image
        return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC) for im in u8])
    out = cv2.resize(u8.reshape(b * h, w), (size, b * h), interpolation=cv2.INTER_CUBIC)
    return out.reshape(b, size, size)


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image, level=0):
    """8-bit grayscale PNG, lossless like cv2.imwrite (the pipeline promises pixels, not bytes);
    an (h, w, 2) image becomes grey + alpha (PNG colour type 4): the beat and its template.

    level 0 (default) stores the rows uncompressed: ~10 kB a file, ~10x faster to write than
    cv2.imwrite. Levels 1-9 use the row filter Up + zlib at that level: ~3.7 kB at level 1
    (cv2.imwrite: ~4.7 kB) for ~0.1 ms more per image on this machine.
    """
    h, w = image.shape[:2]
    colour = 4 if image.ndim == 3 else 0
    image = image.reshape(h, -1)
    raw = np.empty((h, image.shape[1] + 1), np.uint8)
    if level:
        raw[:, 0] = 2  # filter type Up
        raw[0, 1:] = image[0]
        np.subtract(image[1:], image[:-1], out=raw[1:, 1:])
    else:
        raw[:, 0] = 0  # filter type None
        raw[:, 1:] = image
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b""))


# What jetson/scalograms.py needs besides the matrix to redo stage 1 on the device.
DEVICE_SETTINGS = ("fs", "lead", "before", "after", "image_size", "baseline_windows_s", "align_halfwidth_s",
                   "invalid_symbols")


def reader_names(made, classes):
    """What a person reads for each class (the device's CSV): its name, except the thesis'
    numbered folders (0-4), which are read by their label (Normal, LBBB, RBBB, PVC, Paced)."""
    label = {c["name"]: c.get("label", c["name"]) for c in made.get("classes", [])}
    return [label.get(c, c) if str(c).isdigit() else c for c in classes]


def write_device_operator(path, made, classes, source="scalograms"):
    """The device's CWT (jetson/infer_trt.py --record, no PyWavelets there): the operator (compact form),
    the class names (folder names and reader_names) and the stage-1 settings `made`
    (preprocess.made_with) in one .npz."""
    from . import files
    from .errors import UserError

    if made["cwt_context"] != "beat":
        raise UserError(f"{source}: made with cwt_context '{made['cwt_context']}'; the device's CWT operator "
                        "implements the thesis' per-beat CWT only")
    sc = scales(made["fs"], made["freq_min"], made["freq_max"], made["wavelet"])
    n = made["before"] + made["after"]
    kernels = operator_kernels(cwt_operator(n, tuple(sc), made["wavelet"]), n)
    files.save_with(path, lambda tmp: np.savez(tmp, operator_kernels=kernels, classes=np.array(classes),
                                               class_names=np.array(reader_names(made, classes)),
                                               **{k: np.array(made[k]) for k in DEVICE_SETTINGS}), suffix=".npz")


def operator_kernels(op, n):
    """The operator stored compactly: per scale, its entries depend only on t - k (each column
    is the same differenced wavelet, shifted), so row s of the (n_scales, 2n-1) result holds
    entry (k, s, t) at t - k + n - 1. The device rebuilds the matrix by indexing
    (jetson/scalograms.py operator_matrix: copies, no arithmetic, so bit for bit the same);
    0.3 MB instead of 32 MB for 200-sample beats."""
    from jetson.scalograms import operator_matrix

    op3 = op.reshape(n, -1, n)
    kernels = np.concatenate([op3[::-1, :, 0].T, op3[0, :, 1:]], axis=1)   # t - k = -(n-1) .. n-1
    if not np.array_equal(op, operator_matrix(kernels)):
        raise AssertionError("the CWT operator is not shift-invariant per scale")
    return kernels
