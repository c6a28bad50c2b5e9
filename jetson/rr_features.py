"""RR-interval features of every beat: the one implementation, used by stage 1 (training data)
and by the device (infer_trt.py). Python 3.6+, numpy only.

For beat i with R peak at t[i] seconds (peaks of *every* beat of the recording, in order):

    rr_prev      t[i] - t[i-1]                      (beat 0: its next RR)
    rr_next      t[i+1] - t[i]                      (last beat: its previous RR)
    rr_local     mean rr_prev of beats i-9 .. i     (the last 10 intervals)
    rr_patient   mean rr_prev of the beats j <= i with t[j] > t[i] - 300 s
    rr_prev_rel, rr_next_rel, rr_local_rel = the first three divided by rr_patient

Causal except for one beat of look-ahead (rr_next): beat i's features depend only on the peaks
of beats 0 .. i+1, so a live device can compute them as soon as the next beat is detected.
rr_patient is a running mean over the preceding five minutes; during the first five minutes of
a recording it is the mean of what has been seen so far (the warm-up), which is what a device
switched on at that moment can know. Everything is in seconds, so any sampling rate gives the
same features.
"""
import numpy as np

FEATURES = ("rr_prev", "rr_next", "rr_local", "rr_patient", "rr_prev_rel", "rr_next_rel", "rr_local_rel")
LOCAL_BEATS = 10
PATIENT_WINDOW_S = 300.0
# Annotation symbols that mark a heartbeat (wfdb's beat labels); the others (rhythm changes,
# noise, '!' flutter waves, '|' artefacts, ...) are not beats and take no part in the RR series.
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")


def rr_features(peaks, fs, local_beats=LOCAL_BEATS, patient_window_s=PATIENT_WINDOW_S, rows=None):
    """(n, 7) float64 array of FEATURES for sorted R-peak sample numbers `peaks` at `fs` Hz;
    `rows`: only those beats' (the same numbers: a stream needs the newest one or two)."""
    t = np.asarray(peaks, dtype=np.float64) / float(fs)
    n = len(t)
    if n < 2:
        raise ValueError("RR features need at least two beats, got {}".format(n))
    rr = np.diff(t)
    if (rr <= 0).any():
        raise ValueError("R peaks must be strictly increasing")
    prev = np.concatenate([rr[:1], rr])
    nxt = np.concatenate([rr, rr[-1:]])
    csum = np.concatenate([[0.0], np.cumsum(prev)])
    idx = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    prev, nxt = prev[idx], nxt[idx]
    lo = np.maximum(idx - local_beats + 1, 0)
    local = (csum[idx + 1] - csum[lo]) / (idx + 1 - lo)
    lo = np.searchsorted(t, t[idx] - patient_window_s, side="right")
    patient = (csum[idx + 1] - csum[lo]) / (idx + 1 - lo)
    return np.stack([prev, nxt, local, patient, prev / patient, nxt / patient, local / patient], axis=1)


def beat_peaks(samples, symbols):
    """The annotations that are heartbeats (BEAT_SYMBOLS), as (samples, symbols) arrays."""
    symbols = np.asarray(symbols)
    keep = np.isin(symbols, sorted(BEAT_SYMBOLS))
    return np.asarray(samples)[keep], symbols[keep]
