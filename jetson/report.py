"""HTML pages of results: galleries of wrong or doubtful beats and the device's one-page report,
with the pictures of figures.py (ECG strips, beats). Python 3.6+, numpy; matplotlib only for the
pictures (optional on the device: `pyplot()` says what to install).

Shared by the device (infer_trt.py --plot / --report) and the training side (4_testing.py's
reports/errors/ gallery, as `from jetson import report`); it imports nothing of the training code.

A report is a folder: index.html, which uses no network and no script, and the PNG files it
shows, named relative to it (no inlined data), so the folder can be copied, zipped or opened
from disk as it is. `replace_folder` writes it beside the old one and swaps it in: a reader
never sees half a report, and a re-run replaces the old one whole (files of the old one that
the new one does not have go with it).
"""
import heapq
import html
import math
import os
import shutil
import tempfile
from collections import deque

import numpy as np

from .figures import ReportError, _mmss, beat_picture, pyplot, strip_pages  # noqa: F401 (also report.X)

MARKER = ".ecg-report"        # in every folder replace_folder writes: only such folders are replaced


# -- files --------------------------------------------------------------------------------------
def replace_folder(dest, files):
    """Write `files` ({relative path: bytes}) as the folder `dest`, replacing an earlier report
    there whole: built in a temp folder beside it, then renamed into place. A folder that exists,
    is not empty and was not written here (no MARKER file) is refused, never deleted."""
    dest = check_folder(dest)
    parent, name = os.path.split(dest)
    try:
        if not os.path.isdir(parent):
            os.makedirs(parent)
        for stale in os.listdir(parent):   # temp folders of a run killed mid-write
            if stale.startswith("." + name + ".") and stale.endswith((".tmp", ".old")):
                shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
        tmp = tempfile.mkdtemp(prefix="." + name + ".", suffix=".tmp", dir=parent)
    except OSError as e:
        raise ReportError("{}: cannot write the report here ({})".format(dest, e.strerror or e))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        for rel, data in sorted(files.items()):
            path = os.path.join(tmp, rel)
            if not os.path.isdir(os.path.dirname(path)):
                os.makedirs(os.path.dirname(path))
            with open(path, "wb") as f:
                f.write(data)
        open(os.path.join(tmp, MARKER), "w").close()
        if os.path.exists(dest):
            old = tmp[:-len(".tmp")] + ".old"
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def check_folder(dest):
    """The absolute path of `dest` if replace_folder may write there (a new or empty folder, or one
    it wrote), else a ReportError: checked before a run starts, so a bad folder costs no work."""
    dest = os.path.abspath(dest)
    if os.path.exists(dest) and not (os.path.isdir(dest) and (
            os.path.isfile(os.path.join(dest, MARKER)) or not os.listdir(dest))):
        raise ReportError("{}: exists and is not a report folder (no {} file in it): give a new or empty "
                          "folder".format(dest, MARKER))
    return dest


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- HTML ---------------------------------------------------------------------------------------
CSS = """body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.note{color:#555;font-size:.9em}
.strip{max-width:100%;display:block;margin:.4em 0}.gallery{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;border:1px solid #ddd;padding:4px;font-size:.8em;background:#fafafa}
figure img{display:block}figure img.scalogram{width:200px;height:200px;image-rendering:pixelated}
.wrong{color:#d62728;font-weight:bold}"""


def esc(text):
    return html.escape(str(text))


def fmt(value, digits=None):
    """A number as the report prints it: ints as they are, floats with `digits` decimals, None as n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if digits is None or isinstance(value, (int, np.integer)):
        return str(value)
    return "{:.{}f}".format(value, digits)


def cell(value, key=None, digits=None):
    """A table cell of a number; `key` (the number's path in the summary JSON, dot separated) is
    kept as data-key so a reader or a test can check every printed number against the JSON."""
    return '<td{}>{}</td>'.format(' data-key="{}"'.format(esc(key)) if key else "", esc(fmt(value, digits)))


def table(header, rows):
    """header: column titles; rows: lists of cells, each a str (made with cell()) or plain text."""
    head = "".join('<th class="l">{}</th>'.format(esc(h)) if i == 0 else "<th>{}</th>".format(esc(h))
                   for i, h in enumerate(header))
    body = "".join("<tr>{}</tr>".format("".join(c if c.startswith("<td") else '<td class="l">{}</td>'.format(esc(c))
                                                for c in row)) for row in rows)
    return "<table><tr>{}</tr>{}</table>".format(head, body)


def image(src, alt, cls="strip"):
    return '<img class="{}" src="{}" alt="{}">'.format(cls, esc(src), esc(alt))


def gallery(title, note, items, img_class=""):
    """A section of figures; items: (src, alt, caption lines, wrong flag)."""
    figs = "".join('<figure><img{} src="{}" alt="{}"><figcaption>{}</figcaption></figure>'.format(
        ' class="{}"'.format(img_class) if img_class else "", esc(src), esc(alt),
        "<br>".join(('<span class="wrong">{}</span>' if wrong and i == 0 else "{}").format(esc(line))
                    for i, line in enumerate(caption)))
        for src, alt, caption, wrong in items)
    return '<h3>{}</h3><p class="note">{}</p><div class="gallery">{}</div>'.format(esc(title), esc(note), figs)


def page(title, body_parts):
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{0}</title>'
            '<style>{1}</style></head><body><h1>{0}</h1>\n{2}\n</body></html>\n').format(
        esc(title), CSS, "\n".join(body_parts)).encode("utf-8")


def confusion_table(classes, letters, matrix, key):
    header = ["reference \\ predicted"] + ["{} ({})".format(c, l) if c != l else c for c, l in zip(classes, letters)]
    rows = [[header[i + 1]] + [cell(v, "{}.{}.{}".format(key, i, j)) for j, v in enumerate(row)]
            for i, row in enumerate(matrix)]
    return table(header, rows)


def error_groups(true, pred, conf, per_pair):
    """Misclassified items grouped by (true, predicted) pair, most frequent pair first; within a
    pair the most confident first, at most per_pair of them. Returns [(t, p, total, [index, ...])]."""
    true, pred, conf = np.asarray(true), np.asarray(pred), np.asarray(conf)
    wrong = np.flatnonzero(true != pred)
    groups = []
    for t, p in sorted(set(zip(true[wrong].tolist(), pred[wrong].tolist()))):
        idx = wrong[(true[wrong] == t) & (pred[wrong] == p)]
        groups.append((t, p, len(idx), idx[np.argsort(-conf[idx], kind="stable")][:per_pair].tolist()))
    return sorted(groups, key=lambda g: -g[2])


# -- pictures -----------------------------------------------------------------------------------
UNREADABLE = -1   # the class index a log stores for a beat the quality gate marked U


class BeatLog(object):
    """What the device's --plot / --report need from a run, gathered as it goes with bounded extra
    memory: every labelled beat (sample, class, confidence, reference), the input signal, and the
    scalograms of the gallery's beats only: per (reference, predicted) pair the `per_pair` most
    confident errors, and the `per_pair` least confident beats below `low_confidence`."""

    def __init__(self, per_pair=8, low_confidence=0.6):
        self.per_pair, self.low_confidence = per_pair, low_confidence
        self.sample, self.pred, self.conf, self.ref, self.true = [], [], [], [], []
        self.chunks, self.x = [], None
        # the classifier's images not yet matched to their beats (each labelled beat takes the next;
        # the quality gate holds beats back across calls): a few seconds of beats
        self.images = deque()
        self.errors, self.pairs, self.low, self.n_low = {}, {}, [], 0
        self.missed, self.n_unreadable = None, 0

    def wrap(self, classify):
        """The classifier, also keeping the images it is given (the beat's, not its template's)."""
        def keep(u8, rr):
            out = classify(u8, rr)
            self.images.extend(u8[:, 0] if u8.ndim == 4 else u8)
            return out
        return keep

    def signal(self, x):
        self.chunks.append(np.array(x, dtype=np.float64))

    def beat(self, sample, label, conf, ref="", true=None):
        """One labelled beat, in the order the classifier saw them; `true`: the reference in the
        model's classes (an index), None where there is none or it is not one of them. Returns
        the gallery heap it was offered to (errors of its pair, or low confidence), or None."""
        img = self.images.popleft()
        n = len(self.sample)
        self.sample.append(int(sample))
        self.pred.append(int(label))
        self.conf.append(float(conf))
        self.ref.append(ref)
        self.true.append(self._stored_true(true))
        if true is not None and true != label:
            key = (true, int(label))
            self.pairs[key] = self.pairs.get(key, 0) + 1
            heap = self.errors.setdefault(key, [])
            _keep(heap, (conf, -n, img), self.per_pair)
        elif conf < self.low_confidence:
            self.n_low += 1
            heap = self.low
            _keep(heap, (-conf, -n, img), self.per_pair)
        else:
            return None
        return heap   # the gallery heap the beat was offered to

    def unreadable(self, sample, ref=""):
        """A beat the quality gate judged unreadable (--quality; the model labelled it, in the order
        of the others): in the strips as U, never in the gallery."""
        self.images.popleft()
        self.n_unreadable += 1
        self.sample.append(int(sample))
        self.pred.append(UNREADABLE)
        self.conf.append(0.0)
        self.ref.append(ref)
        self.true.append(self._stored_true(None))

    def _stored_true(self, true):
        return true

    def finish(self, x=None, missed=None):
        self.x = np.asarray(x, dtype=np.float64) if x is not None else (
            np.concatenate(self.chunks) if self.chunks else np.zeros(0))
        self.chunks, self.missed = [], missed

    def class_counts(self, n_classes):
        return class_counts(np.asarray(self.pred, dtype=np.int64), n_classes)

    def beats(self):
        return {"sample": self.sample, "pred": self.pred, "ref": self.ref,
                "wrong": [t is not None and p != UNREADABLE and t != p for t, p in zip(self.true, self.pred)]}


def class_counts(pred, n_classes):
    """Beats per class of the predicted class indices `pred` (the unreadable ones left out)."""
    return np.bincount(pred[pred != UNREADABLE], minlength=n_classes).tolist()


def _keep(heap, item, n):
    """Keep the n largest items (by their first fields) in a min-heap."""
    if len(heap) < n:
        heapq.heappush(heap, item)
    elif n and item[:2] > heap[0][:2]:
        heapq.heapreplace(heap, item)


def device_report(log, fs, classes, letters, summary, title, window_s, facts, strips, extra=()):
    """{file: bytes} of the device's report: index.html, the strip pages `strips` (PNG bytes), and
    one picture per gallery beat. summary: the dict --score writes (run, detection, classification);
    its numbers carry data-key attributes; facts: (name, value) rows about the run (model, input);
    window_s: (seconds before R, seconds after R) of a gallery beat's waveform; extra: sections
    (HTML parts, {file: bytes}) placed after the summary (holter_report.sections)."""
    run, det, cls = summary["run"], summary.get("detection"), summary.get("classification")
    files, body = {}, []
    minutes = run["seconds_of_ecg"] / 60.0
    counts = log.class_counts(len(classes))
    body.append("<h2>Summary</h2>")
    body.append(table(["", ""], [[k, esc(v)] for k, v in facts] + [
        ["beats labelled", cell(run["beats"], "run.beats")],
        ["ECG length (s)", cell(run["seconds_of_ecg"], "run.seconds_of_ecg", 1)],
        ["beats per minute", cell(run["beats"] / minutes if minutes else None, None, 1)],
        ["processing time (s)", cell(run["processing_s"], "run.processing_s", 2)],
        ["real-time factor (s of ECG per s)", cell(run["realtime_factor"], "run.realtime_factor", 1)]] + (
        [["unreadable beats (U, signal quality; in the strips, not in the class counts)",
          cell(run["quality"]["beats_unreadable"], "run.quality.beats_unreadable")]] if "quality" in run else [])))
    body.append(table(["predicted class"] + ["{} ({})".format(c, l) if c != l else c
                                             for c, l in zip(classes, letters)],
                      [["beats"] + [cell(n, "class_counts.{}".format(c)) for c, n in zip(classes, counts)]]))
    for parts, more in extra:
        body.extend(parts)
        files.update(more)
    if det:
        body.append("<h2>Detection (EC57, 150 ms matching)</h2>")
        body.append(table(["", "TP", "FN", "FP", "FP in VF (not counted)", "Se %", "+P %"], [[
            "beats", cell(det["tp"], "detection.tp"), cell(det["fn"], "detection.fn"), cell(det["fp"], "detection.fp"),
            cell(det["fp_in_vf_excluded"], "detection.fp_in_vf_excluded"), cell(det["se"], "detection.se", 2),
            cell(det["ppv"], "detection.ppv", 2)]]))
    if cls and cls["matched_beats"]:
        body.append("<h2>Classification of the matched beats</h2>")
        body.append('<p class="note">{} matched beats in the model\'s classes (accuracy {}); {} matched beats of '
                    'other symbols left out.</p>'.format(esc(cls["matched_beats"]), esc(fmt(cls["accuracy"], 4)),
                                                         esc(cls["matched_other_symbols"])))
        body.append(confusion_table(classes, letters, cls["confusion"], "classification.confusion"))
        body.append(table(["class", "n", "Se %", "+P %", "F1"], [
            [c] + [cell(cls["per_class"][c][k], "classification.per_class.{}.{}".format(c, k), d)
                   for k, d in (("n", None), ("se", 2), ("ppv", 2), ("f1", 4))] for c in classes]))
    body.append("<h2>ECG strips</h2>")
    body.append('<p class="note">Each beat\'s predicted class above the trace (coloured letter); the reference '
                'annotation below it; red: the two disagree; orange x: a reference beat no detection matched.</p>')
    for k, png in enumerate(strips):
        name = "strip_{:03d}.png".format(k + 1)
        files[name] = png
        body.append(image(name, "ECG strip page {}".format(k + 1)))
    body.append("<h2>Beats to look at</h2>")
    sections = [(log.errors[key], "reference {} \u2192 predicted {}: {} beats".format(
        letters[key[0]], letters[key[1]], log.pairs[key]), "the {} most confident of them".format(
        min(log.per_pair, log.pairs[key])), True) for key in sorted(log.pairs, key=lambda k: -log.pairs[k])]
    if log.n_low:
        sections.append((log.low, "low confidence (below {:.2f}): {} beats".format(log.low_confidence, log.n_low),
                         "the {} least confident of them".format(min(log.per_pair, log.n_low)), False))
    if not sections:
        body.append('<p class="note">No misclassified or low-confidence beats.</p>')
    before, after = int(round(window_s[0] * fs)), int(round(window_s[1] * fs))
    for heap, head, note, wrong in sections:
        items = []
        for _, neg_n, img in sorted(heap, reverse=True):
            i = -neg_n
            s = log.sample[i]
            a, b = max(s - before, 0), min(s + after, len(log.x))
            caption = ["{} (sample {}): predicted {} ({:.2f})".format(_mmss(s / float(fs)), s, letters[log.pred[i]],
                                                                       log.conf[i])]
            caption += ["reference {}".format(log.ref[i])] if log.ref[i] else []
            name = "beats/beat_{:07d}.png".format(s)
            files[name] = beat_picture(log.x[a:b], fs, s - a, img, ", ".join(caption))
            items.append((name, "beat at sample {}".format(s), caption, wrong))
        body.append(gallery(head, note + ": waveform (input signal, R at 0 ms) and the scalogram the model saw.",
                            items))
    files["index.html"] = page(title, body)
    return files
