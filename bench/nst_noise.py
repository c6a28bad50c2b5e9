"""Synthetic noise in the manner of the MIT-BIH Noise Stress Test (NST), for bench/noise_stress.py
and tests/test_quality.py.

The NST database (real baseline wander, muscle artifact and electrode motion recorded on an
active subject) is not available here, so the three kinds are synthesised; they imitate the
records' descriptions, not their samples:

- `baseline_wander`: respiration (a sinusoid at 0.15-0.35 Hz whose amplitude and rate drift)
  plus a random walk low-passed at 0.5 Hz.
- `muscle`: Gaussian noise band-passed to 10-100 Hz (EMG's band, overlapping the QRS and
  reaching above it), its amplitude modulated by a slow (0.3 Hz) random envelope.
- `electrode_motion`: bursts of 0.2-1.5 s at random times (on average one every 1.5 s):
  1-15 Hz noise, step-like offsets that decay, and spikes, under a smooth envelope - the
  artifacts that look like QRS complexes - plus 10 % (in power) of wander and of muscle noise,
  as the NST's em record carries both.

SNR as the NST's `nst` program defines it (WFDB's nst(1) manual): SNR = 10 log10(S / N) with
S = (peak-to-peak QRS amplitude)^2 / 8, the amplitude the trimmed mean (5 % off each end) of
the ranges within +-50 ms of the first 300 normal (N) beats, and N = (RMS noise)^2, the RMS
the trimmed mean of the RMS about the mean of each 1-second chunk of the first 300 s of noise.
The per-chunk mean removal is the NST's frequency weighting: very slow wander counts little.

Protocol (`stress`): as nst's standard protocol, the first 5 minutes are clean (a learning
period), then 2-minute noisy and clean segments alternate. A noisy segment adds gain * (noise -
its value at the segment's start), and the clean segment after it keeps the last offset, so
the record has no steps (nst's offsets b).
"""
import numpy as np
from scipy.signal import butter, sosfiltfilt

KINDS = ("bw", "ma", "em")
LEARN_S, SEGMENT_S = 300.0, 120.0


def _lowpass(x, fs, hz, order=2):
    return sosfiltfilt(butter(order, hz, btype="low", fs=fs, output="sos"), x)


def _slow(n, fs, hz, rng):
    """A smooth random curve with mean 0 and standard deviation 1, changing at about hz."""
    z = _lowpass(rng.standard_normal(n), fs, hz)
    return (z - z.mean()) / (z.std() + 1e-12)


def baseline_wander(n, fs, rng):
    rate = 0.25 + 0.1 * np.tanh(_slow(n, fs, 0.02, rng))
    amp = 1.0 + 0.5 * np.tanh(_slow(n, fs, 0.02, rng))
    resp = amp * np.sin(2 * np.pi * np.cumsum(rate) / fs + rng.uniform(0, 2 * np.pi))
    walk = _lowpass(np.cumsum(rng.standard_normal(n)), fs, 0.5)
    return resp + (walk - walk.mean()) / (walk.std() + 1e-12)


def muscle(n, fs, rng):
    sos = butter(4, [10.0, min(100.0, 0.45 * fs)], btype="band", fs=fs, output="sos")
    env = np.exp(0.6 * _slow(n, fs, 0.3, rng))
    return sosfiltfilt(sos, rng.standard_normal(n)) * env / np.sqrt(np.mean(env * env))


def electrode_motion(n, fs, rng):
    out = np.zeros(n)
    sos = butter(2, [1.0, 15.0], btype="band", fs=fs, output="sos")
    t = rng.exponential(1.5)
    while t * fs < n:
        length = int(rng.uniform(0.2, 1.5) * fs)
        a = int(t * fs)
        b = min(a + length, n)
        k = b - a
        env = np.hanning(k + 2)[1:-1] if k > 2 else np.ones(k)
        burst = sosfiltfilt(sos, rng.standard_normal(k + 64))[32:32 + k] * 3
        tau = rng.uniform(0.05, 0.4) * fs
        burst += rng.choice([-1, 1]) * rng.uniform(1, 4) * np.exp(-np.arange(k) / tau)   # a decaying step
        if rng.random() < 0.5:                                                              # a spike
            c = rng.integers(0, k)
            w = max(int(rng.uniform(0.01, 0.04) * fs), 1)
            burst += rng.choice([-1, 1]) * rng.uniform(2, 6) * np.exp(-0.5 * ((np.arange(k) - c) / w) ** 2)
        out[a:b] += env * burst
        t += rng.exponential(1.5)
    bw, ma = baseline_wander(n, fs, rng), muscle(n, fs, rng)
    ref = noise_rms(out, fs)
    return out + np.sqrt(0.1) * ref * (bw / noise_rms(bw, fs) + ma / noise_rms(ma, fs))


def make(kind, n, fs, seed):
    """`n` samples of noise `kind` ('bw', 'ma', 'em') at fs Hz; the same seed gives the same noise."""
    rng = np.random.default_rng(seed)
    return {"bw": baseline_wander, "ma": muscle, "em": electrode_motion}[kind](n, fs, rng)


def _trimmed_mean(v):
    v = np.sort(np.asarray(v, dtype=np.float64))
    k = int(len(v) * 0.05)
    return float(np.mean(v[k:len(v) - k])) if len(v) > 2 * k else float(np.mean(v))


def qrs_amplitude(x, fs, ann_samples, ann_symbols, beats=300):
    """nst's signal size: trimmed mean range within +-50 ms of the first `beats` N beats."""
    w = int(round(0.05 * fs))
    s = [int(p) for p, a in zip(ann_samples, ann_symbols) if a == "N" and w <= p < len(x) - w][:beats]
    if not s:   # a record without N beats: every beat annotation
        s = [int(p) for p, a in zip(ann_samples, ann_symbols) if a.isalpha() and w <= p < len(x) - w][:beats]
    return _trimmed_mean([np.ptp(x[p - w:p + w + 1]) for p in s])


def noise_rms(noise, fs, seconds=300):
    """nst's noise size: trimmed mean over 1-s chunks (first `seconds`) of the RMS about each chunk's mean."""
    n = int(fs)
    k = min(int(seconds), len(noise) // n)
    chunks = np.asarray(noise[:k * n]).reshape(k, n)
    return _trimmed_mean(np.sqrt(((chunks - chunks.mean(axis=1, keepdims=True)) ** 2).mean(axis=1)))


def gain(x, fs, ann_samples, ann_symbols, noise, snr_db):
    """The noise gain a with 10 log10(S / (N a^2)) = snr_db."""
    s = qrs_amplitude(x, fs, ann_samples, ann_symbols) ** 2 / 8.0
    return float(np.sqrt(s / (noise_rms(noise, fs) ** 2 * 10 ** (snr_db / 10.0))))


def noisy_mask(n, fs, learn_s=LEARN_S, segment_s=SEGMENT_S):
    """True in the noisy segments of nst's standard protocol."""
    t = np.arange(n) / fs
    return (t >= learn_s) & (((t - learn_s) // segment_s) % 2 == 0)


def stress(x, fs, ann_samples, ann_symbols, kind, snr_db, seed, learn_s=LEARN_S, segment_s=SEGMENT_S):
    """(x with noise added as nst's standard protocol, mask of the noisy samples)."""
    noise = make(kind, len(x), fs, seed)
    a = gain(x, fs, ann_samples, ann_symbols, noise, snr_db)
    mask = noisy_mask(len(x), fs, learn_s, segment_s)
    added = np.zeros(len(x))
    offset = 0.0
    edges = [0] + (np.flatnonzero(np.diff(mask.astype(np.int8))) + 1).tolist() + [len(x)]
    for i, j in zip(edges[:-1], edges[1:]):   # runs of equal mask values
        if mask[i]:
            added[i:j] = offset + a * (noise[i:j] - noise[i])
            offset = added[j - 1]
        else:
            added[i:j] = offset
    return x + added, mask
