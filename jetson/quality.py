"""Signal-quality indices of ECG beats and the rule that calls a beat unreadable (Python 3.6+, numpy).

The indices are the field's (Li, Mark and Clifford 2008, Physiol. Meas. 29:15; Behar, Oster, Li
and Clifford 2013, IEEE Trans. Biomed. Eng. 60:1660), each a plain function here:

    bSQI   agreement of two independent QRS detectors (qrs.py and qrs_second.py) over a window:
           matched / (n1 + n2 - matched), where a detection matches when the other detector has
           one within MATCH_S (150 ms, EC57's tolerance) and `matched` is the smaller of the two
           detectors' matched counts; 1 = they agree on every beat
    agree  whether the second detector has a QRS within MATCH_S of this beat (bSQI of one beat)
    tSQI   template match: the largest Pearson correlation between this beat's window
           (-0.25 s .. +0.35 s around R: QRS and T wave, band-limited to 1-40 Hz) and the windows
           of each of the TEMPLATE_BEATS beats before it; a beat shaped like none of its
           neighbours (noise, an artifact) scores low, a PVC like earlier PVCs scores high
    kSQI   kurtosis E[(x - mean)^4] / var^2 of the window's ECG, band-limited to 1-40 Hz: a
           clean ECG is peaked (well above 5), Gaussian noise gives 3
    pSQI   the window's power in 5-15 Hz (the QRS) over its power in 5-40 Hz: muscle noise
           (broad band) lowers it

Windows: bSQI, kSQI and pSQI look at [R - WINDOW_BEFORE_S, R + WINDOW_AFTER_S) (10 s, as Li
et al.; 2 s of look-ahead, the gate's extra latency). Band limits are applied with the FFT of
each window (after removing the line through its end points), so a window's value depends on
its samples only: a stream and a whole-signal run give the same numbers.

The rule (`Thresholds`): a beat is unreadable (label U) when
    kSQI < kurtosis   or   pSQI < power_ratio   or   (tSQI < template and (not agree or bSQI < agreement))
i.e. a window that is no ECG at all, or a beat shaped like none of its neighbours in a window
where the two detectors disagree. A clean PVC is shaped unlike the normal beats but both
detectors find it and they agree around it, so it stays readable. The defaults were chosen on
DS1 records only (bench/noise_stress.py --steps choose; docs/design.md says how).
`quality` folds the rule into one number in [0, 1] (each index mapped so that its threshold
is 0.5, then combined as the rule combines them): a beat is unreadable exactly when quality < 0.5.
"""
import numpy as np

MATCH_S = 0.15
WINDOW_BEFORE_S, WINDOW_AFTER_S = 8.0, 2.0
BEAT_BEFORE_S, BEAT_AFTER_S = 0.25, 0.35
BEAT_PAD_S = 0.25            # filtered with this much signal each side, then cut
TEMPLATE_BEATS = 32
BAND_HZ = (1.0, 40.0)
QRS_BAND_HZ, WIDE_BAND_HZ = (5.0, 15.0), (5.0, 40.0)
NAMES = ("agree", "bsqi", "tsqi", "ksqi", "psqi")


class Thresholds(object):
    """The rule's thresholds (see the module docstring); chosen on DS1 by bench/noise_stress.py."""

    def __init__(self, template=0.75, agreement=1.0, kurtosis=3.0, power_ratio=0.0):
        self.template, self.agreement = float(template), float(agreement)
        self.kurtosis, self.power_ratio = float(kurtosis), float(power_ratio)

    def as_dict(self):
        return {"template": self.template, "agreement": self.agreement, "kurtosis": self.kurtosis,
                "power_ratio": self.power_ratio}


def agreement(p1, p2, tol):
    """For each position of p1 (sorted), whether p2 (sorted) has one within tol samples."""
    p1, p2 = np.asarray(p1, dtype=np.int64), np.asarray(p2, dtype=np.int64)
    if len(p2) == 0 or len(p1) == 0:
        return np.zeros(len(p1), bool)
    j = np.searchsorted(p2, p1)
    right = np.abs(p2[np.clip(j, 0, len(p2) - 1)] - p1)
    left = np.abs(p1 - p2[np.clip(j - 1, 0, len(p2) - 1)])
    return np.minimum(left, right) <= tol


def bsqi(n1, n2, matched):
    """matched / (n1 + n2 - matched); 1 for an empty window (nothing to disagree on)."""
    union = n1 + n2 - matched
    return float(matched) / union if union > 0 else 1.0


def band_limited(x, fs, band):
    """x without its end-to-end line, keeping only the FFT bins within band (Hz)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 2:
        return np.zeros(n)
    x = x - (x[0] + (x[-1] - x[0]) * np.arange(n) / (n - 1.0))
    f = np.fft.rfft(x)
    hz = np.fft.rfftfreq(n, 1.0 / fs)
    f[(hz < band[0]) | (hz > band[1])] = 0.0
    return np.fft.irfft(f, n)


def kurtosis(x):
    """E[(x - mean)^4] / var^2 (3 for Gaussian noise); 0 for a flat x."""
    x = np.asarray(x, dtype=np.float64)
    d = x - x.mean()
    d2 = d * d
    var = float(np.mean(d2))
    return float(np.mean(d2 * d2)) / (var * var) if var > 0 else 0.0


def power_ratio(x, fs, num=QRS_BAND_HZ, den=WIDE_BAND_HZ):
    """Periodogram power of x within `num` over that within `den` (Hz); 0 when `den` holds less
    than 1e-9 of the window's power (no QRS band at all: no ECG there)."""
    x = np.asarray(x, dtype=np.float64)
    p = np.abs(np.fft.rfft(x - x.mean())) ** 2
    hz = np.fft.rfftfreq(len(x), 1.0 / fs)
    top = p[(hz >= num[0]) & (hz <= num[1])].sum()
    bottom = p[(hz >= den[0]) & (hz <= den[1])].sum()
    return float(top / bottom) if bottom > 1e-9 * p.sum() and bottom > 0 else 0.0


def correlation(rows, w):
    """Pearson correlation of each row of `rows` with w (0 where either is flat)."""
    a = np.asarray(rows, dtype=np.float64)
    a = a - a.mean(axis=-1, keepdims=True)
    b = np.asarray(w, dtype=np.float64) - np.mean(w)
    den = np.sqrt((a * a).sum(axis=-1) * float((b * b).sum()))
    return np.where(den > 0, (a * b).sum(axis=-1) / np.where(den > 0, den, 1.0), 0.0)


def template_match(history, w):
    """tSQI: the largest correlation of w with the earlier beats' windows; 0 with none."""
    return float(correlation(history, w).max()) if len(history) else 0.0


def window_indices(x, fs):
    """(kSQI, pSQI) of one window of raw samples."""
    return kurtosis(band_limited(x, fs, BAND_HZ)), power_ratio(x, fs)


def score(v, t, top=1.0):
    """An index v mapped to [0, 1] so that its threshold t maps to 0.5: linear from 0 to t and
    from t to `top` (the index's best value), 1 beyond; a threshold of 0 or less never fails."""
    if t <= 0:
        return 1.0
    if v < t:
        return 0.5 * max(v, 0.0) / t
    return 1.0 if v >= top or t >= top else 0.5 + 0.5 * (v - t) / (top - t)


def quality(ind, th):
    """The rule as one number in [0, 1], below 0.5 exactly when the beat is unreadable: the least
    of the kSQI and pSQI scores and of the better of the tSQI score and (where the second detector
    agrees) the bSQI score (`score`; kSQI's best value taken as twice its threshold)."""
    context = score(ind["bsqi"], th.agreement) if ind["agree"] else 0.0
    return min(score(ind["ksqi"], th.kurtosis, 2 * th.kurtosis), score(ind["psqi"], th.power_ratio),
               max(score(ind["tsqi"], th.template), context))


def readable(ind, th):
    """The rule itself (equal to quality(ind, th) >= 0.5, written out)."""
    if (th.kurtosis > 0 and ind["ksqi"] < th.kurtosis) or (th.power_ratio > 0 and ind["psqi"] < th.power_ratio):
        return False
    return not (th.template > 0 and ind["tsqi"] < th.template and (not ind["agree"] or ind["bsqi"] < th.agreement))
