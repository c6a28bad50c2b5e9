"""From a raw lead to labelled, R-aligned, amplitude-normalised beats (docs/design.md, stage 1, steps 2-6)."""
import numpy as np
from scipy.signal import medfilt


def window(seconds, fs):
    """Median-filter length as the thesis computes it: int(seconds*fs) - 1 (odd for 360 Hz)."""
    n = int(seconds * fs) - 1
    return n if n % 2 else n + 1  # medfilt needs an odd length (other sampling rates)


def remove_baseline(x, fs, windows_s=(0.2, 0.6)):
    """Subtract the baseline found by cascaded median filters (zero-padded edges, as medfilt)."""
    baseline = x
    for w in windows_s:
        baseline = medfilt(baseline, window(w, fs))
    return x - baseline


def drop_invalid(samples, symbols, invalid_symbols):
    keep = ~np.isin(symbols, list(invalid_symbols))
    return samples[keep], symbols[keep]


def align_peaks(filtered, samples, halfwidth):
    """Move each annotation to the maximum of `filtered` within [r - halfwidth, r + halfwidth)."""
    n = len(filtered)
    aligned = np.empty_like(samples)
    for i, r in enumerate(samples):
        left = max(r - halfwidth, 0)
        right = min(r + halfwidth, n)
        aligned[i] = left + np.argmax(filtered[left:right])
    return aligned


def normalise(filtered, peaks):
    return filtered / np.mean(filtered[peaks])


def select_beats(record, peaks, symbols, n_samples, classes, before, after):
    """Beat list of one record: (class name, peak, symbol), class by class in config order.

    A class takes this record's beats only if its record list contains the record ("all" = any).
    Beats too close to the ends are skipped exactly as the thesis does (r+after >= len skips).
    """
    out = []
    for cls in classes:
        if cls["records"] != "all" and record not in cls["records"]:
            continue
        for r, sym in zip(peaks, symbols):
            if sym in cls["symbols"] and r - before >= 0 and r + after < n_samples:
                out.append((cls["name"], int(r), str(sym)))
    return out


def cut(signal, peaks, before, after):
    """Stack the windows signal[r-before : r+after] into a (beats, before+after) array."""
    idx = np.asarray(peaks)[:, None] + np.arange(-before, after)[None, :]
    return signal[idx]
