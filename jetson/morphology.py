"""Patient-relative morphology features of every beat: the one implementation, used by stage 1
(training data) and by the device (streaming.py). Python 3.6+, numpy only.

A cardiologist judges a beat against the patient's own normal beat. Here the patient's beat is a
running template: the sample-wise median of the baseline-removed windows of the previous
TEMPLATE_BEATS beats (R peak aligned, the same window the scalogram is cut from). Beat i's
features depend on the windows of beats i-TEMPLATE_BEATS .. i only, so they are causal and a
stream computes them as the beats arrive (MorphologyTracker.push, one beat at a time or many:
the same numbers).

For a window w with its R peak at index `before`, sampled at fs, and the template m:

    qrs_width       energy width of the QRS: the time between 10 % and 90 % of the cumulative
                    squared slope within +-QRS_HALF_S of R (seconds)
    qrs_width_rel   qrs_width / the template's
    qrs_amp_rel     peak-to-peak amplitude within +-QRS_HALF_S of R / the template's
    corr_qrs        Pearson correlation of beat and template within +-QRS_HALF_S of R
    corr_pre        ... over the window before the QRS (the P wave: premature atrial beats)
    corr_post       ... over the window after the QRS (the T wave: inverted after ventricular beats)
    dist_rel        RMS(w - m) / RMS(m) over the whole window

Every feature is a ratio or a shape measure, so it does not depend on the amplitude
normalisation (record or running) the images use. Fallbacks, documented and tested:
the first beat of a recording has no previous beat and is its own template (ratios 1,
correlations 1, distance 0); until TEMPLATE_BEATS beats have been seen the template is the
median of those there are (the warm-up, what a device switched on then can know); a flat part
(zero variance or amplitude) gives correlation 0 and ratios 1 rather than a division by zero.
"""
import numpy as np

FEATURES = ("qrs_width", "qrs_width_rel", "qrs_amp_rel", "corr_qrs", "corr_pre", "corr_post", "dist_rel")
TEMPLATE_BEATS = 32
QRS_HALF_S = 0.1
_EPS = 1e-12


def _regions(before, length, fs):
    q = int(round(QRS_HALF_S * fs))
    a, b = max(before - q, 1), min(before + q, length - 1)
    return slice(a, b), slice(0, a), slice(b, length)


def _width(w, region, fs):
    """Energy width (s) of each row's QRS region: 10 % to 90 % of its cumulative squared slope."""
    d = np.diff(w[:, region], axis=1) ** 2
    c = np.cumsum(d, axis=1)
    total = c[:, -1:]
    ok = total[:, 0] > _EPS
    c = c / np.where(total > _EPS, total, 1.0)
    lo = (c < 0.1).sum(axis=1)
    hi = (c < 0.9).sum(axis=1)
    return np.where(ok, (hi - lo + 1) / float(fs), 0.0)


def _ratio(num, den):
    ok = (np.abs(den) > _EPS) & (np.abs(num) > _EPS)
    return np.where(ok, num / np.where(ok, den, 1.0), 1.0)


def _corr_stacked(x, n):
    """_corr(x[:n], x[n:]) of beats stacked over their templates: the same numbers, one call per
    step for both halves (a stream's one beat pays numpy's per-call cost, not the arithmetic)."""
    x = x - x.mean(axis=1, keepdims=True)
    ss = (x * x).sum(axis=1)
    a, b = x[:n], x[n:]
    den = np.sqrt(ss[:n] * ss[n:])
    return np.where(den > _EPS, (a * b).sum(axis=1) / np.where(den > _EPS, den, 1.0), 0.0)


def features_against(windows, templates, before, fs):
    """(n, 7) float64 FEATURES of `windows` (n, L) against their `templates` (n, L)."""
    w = np.asarray(windows, dtype=np.float64)
    m = np.asarray(templates, dtype=np.float64)
    n = len(w)
    qrs, pre, post = _regions(before, w.shape[1], fs)
    both = np.concatenate([w, m])   # each measure row by row: beats and templates in one call
    width = _width(both, qrs, fs)
    amp = both[:, qrs].max(axis=1) - both[:, qrs].min(axis=1)
    width_w, width_m, amp_w, amp_m = width[:n], width[n:], amp[:n], amp[n:]
    rms_m = np.sqrt((m * m).mean(axis=1))
    dist = np.sqrt(((w - m) ** 2).mean(axis=1))
    dist_rel = np.where(rms_m > _EPS, dist / np.where(rms_m > _EPS, rms_m, 1.0), 0.0)
    return np.stack([width_w, _ratio(width_w, width_m), _ratio(amp_w, amp_m), _corr_stacked(both[:, qrs], n),
                     _corr_stacked(both[:, pre], n), _corr_stacked(both[:, post], n), dist_rel], axis=1)


def _median_rows(block):
    """np.median(block, axis=0), the same numbers: each column's middle value (the mean of the
    two middle ones for an even count) after a sort along contiguous memory, ~3x faster than
    np.median for the template's 32 x 200 (finite values: the device refuses NaN input)."""
    c = len(block)
    s = np.sort(np.ascontiguousarray(block.T), axis=1)
    return s[:, c // 2] if c % 2 else (s[:, c // 2 - 1] + s[:, c // 2]) / 2.0


class MorphologyTracker(object):
    """The running template of one recording. push(windows) takes the next beats' windows (in
    time order, every beat of the recording, classified or not) and returns their features;
    only the last `template_beats` windows are kept (bounded memory)."""

    def __init__(self, before, fs, template_beats=TEMPLATE_BEATS):
        if template_beats < 1:
            raise ValueError("the template needs at least one beat, got {}".format(template_beats))
        self.before, self.fs, self.k = int(before), float(fs), int(template_beats)
        self.history = None

    def push(self, windows):
        return self.push_with_templates(windows)[0]

    def push_with_templates(self, windows):
        """(features, templates): the features of push() and each beat's template window (the
        second image channel of a model with preprocess.template_channel)."""
        w = np.asarray(windows, dtype=np.float64)
        if w.ndim != 2:
            raise ValueError("windows must be a 2-D array (beats x samples), got shape {}".format(w.shape))
        if len(w) == 0:
            return np.zeros((0, len(FEATURES))), np.zeros((0,) + w.shape[1:])
        hist = w[:0] if self.history is None else self.history
        if hist.shape[1] != w.shape[1]:
            raise ValueError("window length {} differs from the earlier beats' {}".format(w.shape[1], hist.shape[1]))
        allw = np.concatenate([hist, w])
        start = len(hist)
        templates = np.empty_like(w)
        for j in range(len(w)):
            i = start + j
            templates[j] = _median_rows(allw[max(i - self.k, 0):i]) if i > 0 else allw[0]
        self.history = allw[-self.k:].copy()
        return features_against(w, templates, self.before, self.fs), templates


def morphology_features(windows, before, fs, template_beats=TEMPLATE_BEATS):
    """(n, 7) FEATURES of a whole recording's beat windows (n, L), in time order."""
    return MorphologyTracker(before, fs, template_beats).push(windows)


def running_templates(windows, before, fs, template_beats=TEMPLATE_BEATS):
    """(features, templates) of a whole recording's beat windows, in time order."""
    return MorphologyTracker(before, fs, template_beats).push_with_templates(windows)
