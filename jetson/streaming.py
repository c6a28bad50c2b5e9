"""From raw samples to classified beats, in one pass or chunk by chunk (Python 3.6+, numpy, scipy).

`BeatEngine.push(chunk)` takes the next samples of one lead at the input's own rate and returns
the beats that became final; `push(last_chunk, final=True)` ends the signal. The batch mode is
the same engine given the whole signal as one chunk, so a stream and a batch run compute the
same numbers (tests/test_device_*.py): every step is either a filter with bounded support
(recomputed on a buffer that carries enough context: exact) or a state machine fed in time order.
With `overlap` (overlap.py) the images and the model run in a second process and the beats leave
a few pushes later, with the same labels.

Steps, all at the model's rate (the operator file's fs, 360 Hz):
  resample (Resampler: scipy's resample_poly, polyphase, chunked exactly)
  baseline removal (stage 1's two centred median filters: 0.2 s and 0.6 s; each output sample
      depends on the input within +-0.39 s, so a stream is exact 0.39 s behind the input)
  R peaks: detected (qrs.py) or given (annotations), aligned as stage 1 (largest value within
      +-50 ms of the baseline-removed lead)
  amplitude normalisation: "record" (stage 1: the mean R height of the whole record) or
      "running" (the mean R height of the beats of the last 300 s up to this one: causal)
  200-sample windows (90 before R, 110 after), RR features (rr_features.py; one beat of
      look-ahead, so a beat is classified when the next beat is found), for models that take them
      the morphology features against the running template (morphology.py; causal), CWT images,
      the model.
A beat is classified once its window is complete and the next beat is known (or the signal has
ended); all sample numbers given out are the input's own.
"""
import numpy as np
from scipy.ndimage import median_filter

from . import qrs, scalograms
from .common import DeviceError
from .morphology import MorphologyTracker
from .resample import Resampler
from .rr_features import LOCAL_BEATS, PATIENT_WINDOW_S, rr_features

NORMALISATIONS = ("record", "running")


def median_length(seconds, fs):
    n = int(float(seconds) * fs) - 1
    return n if n % 2 else n + 1


class BeatEngine(object):
    """Resampling, baseline, R peaks, windows, RR features and classification of one lead.

    classify(images_u8, features) -> (labels, confidences) is called with the beats that are ready;
    `features` are the RR features (n, 7), followed by the morphology features (n, 7) when
    `morphology` is true; with `template_channel` the images are (n, 2, H, W): the beat and the
    scalogram of its running template (stage 1's preprocess.template_channel). given_peaks (model-rate sample numbers, sorted) replaces the detector
    (--beats annotations), with `keep` saying which of them are classified (the others only count
    for RR and the template).

    normalisation "record" divides by the mean R height of the record's classified beats: on a
    whole signal pushed at once that is known; pushed in blocks it must be given (`record_norm`,
    from a first detection-only pass over the blocks: `kept_heights`, the heights in order).
    """

    def __init__(self, op, fs_in, classify, normalisation="running", given_peaks=None, keep=None, morphology=False,
                 template_channel=False, record_norm=None, detector=None, overlap=None):
        if normalisation not in NORMALISATIONS:
            raise DeviceError("unknown normalisation '{}'".format(normalisation))
        self.op, self.classify, self.norm = op, classify, normalisation
        self.record_norm, self.detector = record_norm, detector   # detector: qrs.Settings (None: defaults)
        self.kept_heights = [] if classify is None and normalisation == "record" else None
        self.images = scalograms.images
        self.fs, self.fs_in = float(op["fs"]), float(fs_in)
        self.resampler = Resampler(self.fs_in, self.fs)
        self.before, self.after = int(op["before"]), int(op["after"])
        self.offsets = np.arange(-self.before, self.after)[None, :]   # a window's samples around its R peak
        self.half = int(float(op["align_halfwidth_s"]) * self.fs)
        self.medians = [median_length(w, self.fs) for w in op["baseline_windows_s"]]
        self.m_base = sum(m // 2 for m in self.medians)
        self.m_feat = qrs.feature_margin(self.fs)
        self.m_cand = qrs.candidate_margin(self.fs)
        self.features = qrs.FeatureStream(self.fs)                # the detector's feature signals, parallel to y
        self.y, self.filt, self.y0 = np.zeros(0), np.zeros(0), 0   # model-rate lead and baseline-removed lead
        self.n, self.f_end, self.c_end = 0, 0, 0                  # samples in, filt exact up to, candidates fed up to
        self.decider, self.raw = None, []                         # detector; detected peaks not yet aligned
        self.given = None if given_peaks is None else np.asarray(given_peaks, dtype=np.int64)
        self.keep = None if keep is None else np.asarray(keep, dtype=bool)
        self.n_given = 0
        self.peaks, self.heights, self.flags = [], [], []         # aligned beats not yet dropped from memory
        self.first = 0                                            # beat number of peaks[0]
        self.next_beat = 0                                        # next beat to classify
        self.trimmed_at = None                                    # next_beat - first at the last _trim_beats
        self.final = False
        # every beat with a full window enters the running template, in time order (stage 1 alike)
        self.with_morph, self.with_template = bool(morphology), bool(template_channel)
        # overlap (overlap.py): the images and the model in a second process, the labels in order
        # as they come back; the same labels, the beats out a little later
        self.overlap = overlap if classify is not None else None
        self.morph = MorphologyTracker(self.before, self.fs) if morphology or template_channel else None

    # -- signal buffers -------------------------------------------------------------------
    def _append(self, y):
        self.y = np.concatenate([self.y, y])
        self.filt = np.concatenate([self.filt, np.zeros(len(y))])
        self.features.grow(len(y))
        self.n += len(y)

    def _baseline(self):
        """Bring filt up to date: exact wherever both median filters see all their input. Only when
        a step waits for it (a new peak to align, the next beat's window): the filters then run once
        per beat over everything exact so far, not once per chunk (a stream's 0.25 s chunks), with
        the same values (each output depends only on its inputs)."""
        end = self.n if self.final else self.n - self.m_base
        if end <= self.f_end or not (self.final or self._filt_wanted(end)):
            return
        a = max(self.f_end - self.m_base, 0)
        seg = self.y[a - self.y0:self.n - self.y0]
        base = seg
        for m in self.medians:
            base = median_filter(base, m, mode="constant", cval=0.0)
        self.filt[self.f_end - self.y0:end - self.y0] = (seg - base)[self.f_end - a:end - a]
        self.f_end = end

    def _filt_wanted(self, end):
        """Does a step wait for filt up to at most `end`: the oldest detected peak's alignment, or
        the window of the next beat to classify once the beat after it is known (_ready)?"""
        if self.raw and self.raw[0] + self.half <= end:
            return True
        nb = self.next_beat - self.first
        return nb + 1 < len(self.peaks) and self.peaks[nb] + self.after > self.f_end

    def _detect(self):
        if self.given is not None:
            upto = self.n if self.final else self.n - self.half
            k = int(np.searchsorted(self.given, upto))
            self.raw.extend(self.given[self.n_given:k].tolist())
            self.n_given = k
            return
        self.features.update(self.y, self.n, self.y0, self.final)
        end = self.n if self.final else self.n - self.m_feat
        if self.decider is None:
            init = int(qrs.INIT_S * self.fs)
            if not self.final and self.n < init + self.m_feat:
                return
            # the seed heights from the MWI the feature stream has (exact there; nothing trimmed yet)
            mwi = self.features.mwi[:min(self.n, init)]
            self.decider = qrs.Decider(self.fs, qrs.seed_heights(mwi, self.fs), self.detector)
        if end > self.c_end:
            # the candidates of [c_end, end) from the features around them (exact there: end lags
            # the features by the candidate radius and the QRS position window)
            a = max(self.c_end - self.m_cand, 0)
            f, top, o = self.features, self.features.mwi_end, self.y0
            idx, h, s, pos = qrs.candidates(f.bp[a - o:top - o], f.slope(a - o, top - o), f.mwi[a - o:top - o],
                                            self.fs, self.c_end - a, end - a)
            if len(idx):
                self.raw.extend((np.asarray(self.decider.feed(idx + a, h, s, pos + a), dtype=np.int64)).tolist())
            self.c_end = end
        if self.final:
            self.raw.extend(self.decider.finish(self.n))

    def _align(self):
        """Stage 1's alignment of the peaks whose +-half window is exact in filt."""
        while self.raw and (self.final or self.raw[0] + self.half <= self.f_end):
            r = self.raw.pop(0)
            left, right = max(r - self.half, 0), min(r + self.half, self.n)
            p = left + int(np.argmax(self.filt[left - self.y0:right - self.y0]))
            flag = True if self.keep is None else bool(self.keep[self.first + len(self.peaks)])
            if self.peaks and p <= self.peaks[-1]:
                if self.keep is not None:   # keep the beat numbering of the given peaks
                    self.peaks.append(p)
                    self.heights.append(float(self.filt[p - self.y0]))
                    self.flags.append(None)
                continue                    # two peaks aligned onto one: one beat
            self.peaks.append(p)
            self.heights.append(float(self.filt[p - self.y0]))
            self.flags.append(flag)
            if flag and self.kept_heights is not None:
                self.kept_heights.append(self.heights[-1])

    # -- beats ----------------------------------------------------------------------------
    def _ready(self):
        """Beat numbers (relative to self.first) that can be classified now."""
        out = []
        for i in range(self.next_beat - self.first, len(self.peaks)):
            p = self.peaks[i]
            if not self.final and (i + 1 >= len(self.peaks) or p + self.after > self.f_end):
                break
            out.append(i)
        return out

    def _rr(self, rel, all_peaks):
        """RR features of the beats `rel` over all (distinct) peaks in memory (`all_peaks`: self.peaks
        as float64)."""
        if None not in self.flags:   # detected beats (no duplicate given peaks): every peak, no bookkeeping
            if len(self.peaks) < 2:
                return np.zeros((len(rel), 7), np.float32)
            return rr_features(all_peaks, self.fs, rows=rel)
        valid = [i for i, f in enumerate(self.flags) if f is not None]
        peaks = np.asarray([self.peaks[i] for i in valid], dtype=np.float64)
        if len(peaks) < 2:
            return np.zeros((len(rel), 7), np.float32)
        feats = rr_features(peaks, self.fs)
        where = {v: k for k, v in enumerate(valid)}
        return feats[[where[i] for i in rel]]  # float64: the runner casts to the model's float32

    def _norm(self, rel, all_peaks):
        if self.norm == "record" and self.record_norm is not None:
            return np.full(len(rel), self.record_norm)
        heights = np.asarray(self.heights)
        ok = np.asarray([f is not None for f in self.flags]) if None in self.flags else np.ones(len(heights), bool)
        if self.norm == "record":     # stage 1: the whole record's classified beats (batch only)
            sel = ok & np.asarray([bool(f) for f in self.flags])
            return np.full(len(rel), np.mean(heights[sel]) if sel.any() else np.nan)
        t = all_peaks / self.fs
        lo = np.searchsorted(t, t[rel] - PATIENT_WINDOW_S, side="right")
        if ok.all():   # the same means without the copies
            return np.asarray([np.mean(heights[a:i + 1]) for a, i in zip(lo, rel)])
        return np.asarray([np.mean(heights[a:i + 1][ok[a:i + 1]]) for a, i in zip(lo, rel)])

    def _emit(self):
        """The beats that became ready: (found, job). `found`: their tuples without labels;
        `job`: what _label needs to label them (None: nothing to classify), copies only, so that
        the next push may run while it is labelled (overlap)."""
        rel = self._ready()
        if not rel:
            return [], None
        self.next_beat = self.first + rel[-1] + 1
        peaks = np.asarray([self.peaks[i] for i in rel], dtype=np.int64)
        found = [(self.first + i, int(p), self.to_input(p), None, None) for i, p in zip(rel, peaks)
                 if self.flags[i] is not None]
        usable = np.asarray([self.flags[i] is True for i in rel]) & (peaks - self.before >= 0) & (
            peaks + self.after < self.n)
        morph, templates = self._morphology(rel, peaks) if self.morph is not None else (None, None)
        rel = [i for i, u in zip(rel, usable) if u]
        if not rel or self.classify is None:   # classify=None: detection only (bench_detection.py)
            return found, None
        peaks = np.asarray([self.peaks[i] for i in rel], dtype=np.int64)
        all_peaks = np.asarray(self.peaks, dtype=np.float64)
        norm = self._norm(rel, all_peaks)
        if not np.all(np.isfinite(norm)) or np.any(norm == 0):
            raise DeviceError("the mean R height is {:g}: the signal has no usable beats".format(float(norm[0])))
        windows = self.filt[(peaks - self.y0)[:, None] + self.offsets] / norm[:, None]
        feats = self._rr(rel, all_peaks)
        if self.with_morph:
            feats = np.concatenate([feats, np.asarray([morph[i] for i in rel])], axis=1)
        if self.with_template:   # scaled as the beat (only rounding depends on it: images are min-max scaled)
            windows = np.concatenate([windows, np.asarray([templates[i] for i in rel]) / norm[:, None]])
        return found, ([self.first + i for i in rel], windows, feats)

    def _label(self, found, job):
        """The beats `found` with the labels of `job` (_emit): their images and the model."""
        if job is None:
            return found
        numbers, windows, feats = job
        images = scalograms.beat_images(windows, self.op, len(numbers), self.with_template)
        return labelled(found, numbers, *self.classify(images, feats))

    def _morphology(self, rel, peaks):
        """({beat: morphology features}, {beat: template window}) for the beats `rel` (model-rate
        `peaks`) that have a full window; each enters the running template whether it is
        classified or not."""
        full = [(i, p) for i, p in zip(rel, peaks)
                if self.flags[i] is not None and p - self.before >= 0 and p + self.after < self.n]
        if not full:
            return {}, {}
        idx = (np.asarray([p for _, p in full]) - self.y0)[:, None] + self.offsets
        feats, templates = self.morph.push_with_templates(self.filt[idx])
        beats = [i for i, _ in full]
        return dict(zip(beats, feats)), dict(zip(beats, templates))

    def _trim_beats(self):
        # RR features and the running mean look back 300 s and LOCAL_BEATS beats from the next
        # beat to classify, plus one beat (the RR interval into the oldest one)
        t = np.asarray(self.peaks, dtype=np.float64) / self.fs
        nb = self.next_beat - self.first
        oldest = t[nb] if nb < len(t) else self.n / self.fs
        keep_from = max(min(nb - LOCAL_BEATS - 1, int(np.searchsorted(t, oldest - PATIENT_WINDOW_S)) - 2), 0)
        if keep_from > 0:
            del self.peaks[:keep_from], self.heights[:keep_from], self.flags[:keep_from]
            self.first += keep_from

    def to_input(self, p):
        """A model-rate sample number in the input's own sample numbers."""
        return int(round(p * self.fs_in / self.fs))

    def _trim(self):
        """Forget what no later step needs: bounded memory in a stream."""
        if self.final:
            return
        # the beats in memory: what they must hold moves only with the next beat to classify (or
        # with the signal's end while every beat found is classified), so not every chunk
        nb = self.next_beat - self.first
        if nb != self.trimmed_at or nb >= len(self.peaks):
            self._trim_beats()
            self.trimmed_at = self.next_beat - self.first
        need = min([self.f_end - self.m_base, self.c_end - self.m_feat, self.n - self.m_base - self.m_feat]
                   + [r - self.half for r in self.raw]
                   + [p - self.before for p in self.peaks[self.next_beat - self.first:]])
        need = max(need - 1, 0)
        if need > self.y0:
            self.y, self.filt = self.y[need - self.y0:], self.filt[need - self.y0:]
            self.features.drop(need - self.y0)
            self.y0 = need

    def push(self, x, final=False):
        """Feed the next samples (input rate); returns the beats that became final as tuples
        (beat number, model-rate peak, input-rate peak, label index, confidence); label and
        confidence are None for a beat without a full window (the signal's first and last)."""
        self.final = final
        self._append(self.resampler.push(x, final))
        self._detect()     # on the lead itself; the baseline only serves the alignment and the windows
        self._baseline()
        self._align()
        found, job = self._emit()
        self._trim()
        if self.overlap is None:
            return self._label(found, job)
        if job is not None and self.overlap.accepting():
            self.overlap.put(found, job)   # labelled in the model process while the next pushes go on
        else:                              # labelled here (the model process is not up yet), in order
            self.overlap.put(self._label(found, job), None)
        return self.overlap.take(final)

    @property
    def held_from(self):
        """No beat still to come out of push() has its R peak before this model-rate sample: the
        buffer's start, or the oldest beat waiting for its label in the model process."""
        oldest = self.overlap.oldest() if self.overlap is not None else None
        return self.y0 if oldest is None else min(self.y0, oldest)

    def close(self):
        """Stop the overlap's model process (the final push does; call it when a stream is abandoned)."""
        if self.overlap is not None:
            self.overlap.close()


def labelled(found, numbers, labels, conf):
    """The beat tuples `found` with the labels and confidences of the beats `numbers` (in that order)."""
    done = {b: (int(k), float(c)) for b, k, c in zip(numbers, labels, conf)}
    return [b[:3] + done.get(b[0], (None, None)) for b in found]
