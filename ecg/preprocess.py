"""Stage 1 orchestration: records -> scalogram PNGs + manifest, parallel and resumable.

Each record is one job. A job writes its PNGs atomically, then a part file listing them
(`.parts/<record>.csv`); the part file is the record's completion mark, so a killed run redoes
only the unfinished records, and re-running a finished stage does nothing. manifest.csv is the
concatenation of the part files, rewritten atomically at the end of each run.
"""
import csv
import functools
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jetson import morphology  # the device's own implementations: one definition of each feature
from jetson import rr_features as rr

from . import beats as B
from . import files, records, scalogram
from .errors import UserError

MANIFEST_FIELDS = ["path", "record", "sample", "symbol", "class", "index"]
RR_FIELDS = list(rr.FEATURES)
MORPH_FIELDS = list(morphology.FEATURES)
PARTS = ".parts"


def settings_of(cfg, resample=False):
    """Everything that changes the images: a different value means different outputs."""
    p = cfg["preprocess"]
    keys = ["fs", "lead", "baseline_windows_s", "align_halfwidth_s", "before", "after", "wavelet",
            "freq_min", "freq_max", "image_size", "cwt_context"]
    scheme = cfg.scheme
    out = {**{k: p[k] for k in keys}, "scheme": p["scheme"], "classes": scheme["classes"],
           "invalid_symbols": scheme["invalid_symbols"], "resample": bool(resample)}
    for key in ("rr_features", "morph_features", "template_channel"):  # only when on: older folders keep their stamp
        if p.get(key):
            out[key] = True
    return out


def beat_features(filtered, samples, symbols, fs, halfwidth, rr_on=True, before=None, after=None):
    """({aligned R peak: features}, names, {aligned R peak: template window}) over every beat
    annotation of a record (not only the beats of the classes kept): the RR series and the
    running template are the patient's, whatever the beats are called. The peaks are aligned as
    the kept beats are, so the same peak finds its features. RR features when `rr_on`;
    morphology features against the running template (and the template windows) when
    `before`/`after` (the beat window) are given, from every beat with a full window, as the
    device computes them (jetson/streaming.py)."""
    beat_samples, _ = rr.beat_peaks(samples, symbols)
    peaks = B.align_peaks(filtered, beat_samples, halfwidth)
    if len(peaks) < 2:
        return {}, [], {}
    peaks = np.unique(peaks)  # two annotations that align to one peak are one beat
    columns, names, templates = [], [], {}
    if rr_on:
        columns.append(rr.rr_features(peaks, fs))
        names += RR_FIELDS
    if before is not None:
        full = (peaks - before >= 0) & (peaks + after < len(filtered))
        morph = np.full((len(peaks), len(MORPH_FIELDS)), np.nan)
        morph[full], tmpl = morphology.running_templates(B.cut(filtered, peaks[full], before, after), before, fs)
        templates = dict(zip(peaks[full].tolist(), tmpl))
        columns.append(morph)
        names += MORPH_FIELDS
    return dict(zip(peaks.tolist(), np.concatenate(columns, axis=1))) if columns else {}, names, templates


@functools.lru_cache(maxsize=2)
def _beat_images(n, sc, wavelet, size):
    return scalogram.BeatImages(n, sc, wavelet, size)


def process_record(rec, folder, out, settings, batch=256, png_level=0):
    """Write one record's scalograms; return its manifest rows."""
    s = settings
    fs = s["fs"]
    if s.get("template_channel") and s["cwt_context"] != "beat":
        raise UserError("preprocess.template_channel needs preprocess.cwt_context = \"beat\" (the template is "
                        "a window, not a place in the record)")
    x, samples, symbols = records.read_record(folder, rec, s["lead"], fs, s["resample"])
    filtered = B.remove_baseline(x, fs, s["baseline_windows_s"])
    features = names = None
    templated = s.get("morph_features") or s.get("template_channel")
    if s.get("rr_features") or templated:
        features, names, templates = beat_features(filtered, samples, symbols, fs, int(s["align_halfwidth_s"] * fs),
                                                   bool(s.get("rr_features")),
                                                   *((s["before"], s["after"]) if templated else ()))
        if not features and not templates:   # fewer than two beats: no RR interval, no template
            raise UserError(f"record {rec}: fewer than two annotated beats; per-beat features and the template "
                            "channel need at least two")
        if not s.get("morph_features"):   # the templates only (template_channel)
            features = {k: v[:len(RR_FIELDS)] for k, v in features.items()} if s.get("rr_features") else None
            names = RR_FIELDS if s.get("rr_features") else None
    samples, symbols = B.drop_invalid(samples, symbols, s["invalid_symbols"])
    peaks = B.align_peaks(filtered, samples, int(s["align_halfwidth_s"] * fs))
    if len(peaks) == 0:
        return []
    normalized = B.normalise(filtered, peaks)
    chosen = B.select_beats(rec, peaks, symbols, len(normalized), s["classes"], s["before"], s["after"])
    for cls in {c for c, _, _ in chosen}:
        (out / cls).mkdir(parents=True, exist_ok=True)
    sc = scalogram.scales(fs, s["freq_min"], s["freq_max"], s["wavelet"])
    rows = []
    out_str = str(out)
    for start in range(0, len(chosen), batch):
        part = chosen[start:start + batch]
        r_peaks = [r for _, r, _ in part]
        if s["cwt_context"] == "record":
            coef = scalogram.cwt_in_context(normalized, r_peaks, s["before"], s["after"], sc, s["wavelet"])
            images = scalogram.to_images(coef, s["image_size"])
        else:
            make = _beat_images(s["before"] + s["after"], tuple(sc), s["wavelet"], s["image_size"])
            images = make(B.cut(normalized, r_peaks, s["before"], s["after"]))
            if s.get("template_channel"):
                # the patient's running template beside the beat (a 2-channel PNG: grey + alpha),
                # scaled as the beat is (the image's min-max scaling makes this only a rounding matter)
                gain = np.mean(filtered[peaks])
                images = np.stack([images, make(np.stack([templates[r] for r in r_peaks]) / gain)], axis=-1)
        for i, ((cls, r, sym), image) in enumerate(zip(part, images), start):
            rel = f"{cls}/{rec}_{cls}_{i}.png"
            files.write_bytes(f"{out_str}/{rel}", scalogram.encode_png(image, png_level))
            row = {"path": rel, "record": rec, "sample": r, "symbol": sym, "class": cls, "index": i}
            if features is not None:   # every kept peak has them: aligned as beat_features aligns
                row.update(zip(names, features[r].tolist()))
            rows.append(row)
    return rows


def _job(args):
    rec, folder, out, settings, batch, png_level = args
    from threadpoolctl import threadpool_limits
    import cv2

    cv2.setNumThreads(1)  # one core per worker: the parallelism is across records
    with threadpool_limits(1):
        rows = process_record(rec, folder, out, settings, batch, png_level)
    files.write_text(out / PARTS / f"{rec}.csv", _csv(rows))
    return rec, len(rows)


def _csv(rows):
    buf = io.StringIO()
    fields = (MANIFEST_FIELDS + (RR_FIELDS if rows and RR_FIELDS[0] in rows[0] else [])
              + (MORPH_FIELDS if rows and MORPH_FIELDS[0] in rows[0] else []))
    w = csv.DictWriter(buf, fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _read_part(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _complete(out, rec):
    part = out / PARTS / f"{rec}.csv"
    return part.is_file() and all((out / row["path"]).is_file() for row in _read_part(part))


def _remove(out, parts):
    """Remove the images the given completion marks list, then the marks."""
    for part in parts:
        for row in _read_part(part):
            (out / row["path"]).unlink(missing_ok=True)
        part.unlink()


def _purge(out):
    """Remove every output a previous run with other settings recorded."""
    _remove(out, sorted((out / PARTS).glob("*.csv")))
    (out / "manifest.csv").unlink(missing_ok=True)


def stored_settings(out):
    """The settings a scalogram folder was made with (None for a folder without the stamp)."""
    stamp = Path(out) / PARTS / "settings.json"
    try:
        return json.loads(stamp.read_text()) if stamp.is_file() else None
    except (OSError, ValueError):
        raise UserError(f"{stamp}: unreadable; re-run 1_preprocessing.py --force") from None


def made_with(cfg):
    """The preprocessing settings behind cfg's scalogram folder: its stamp where there is one
    (stage 1 may have run with other flags than a later stage), else the config's."""
    return {**cfg["preprocess"], "invalid_symbols": cfg.scheme["invalid_symbols"], "classes": cfg.scheme["classes"],
            **(stored_settings(cfg.path("scalogram_dir")) or {})}


def run(folder, rec_list, out, settings, workers=0, force=False, batch=256, png_level=0):
    """Process `rec_list` into `out`; return the number of beats written in this run."""
    out = Path(out)
    files.check_writable(out)
    (out / PARTS).mkdir(exist_ok=True)
    stamp = out / PARTS / "settings.json"
    key = json.dumps(settings, sort_keys=True)
    if stamp.is_file() and stamp.read_text() != key:
        if not force:
            raise UserError(f"{out}: made with other preprocessing settings; use --force to redo "
                            "it or --out for another folder")
        _purge(out)
    files.write_text(stamp, key)
    files.remove_stale_temps(out)
    # the folder holds exactly the records asked for: outputs of others (an earlier, larger run) go
    wanted = set(rec_list)
    others = sorted(p for p in (out / PARTS).glob("*.csv") if p.stem not in wanted)
    if others:
        print(f"removing the outputs of {len(others)} records not asked for this time: "
              + " ".join(p.stem for p in others))
        _remove(out, others)

    todo = [r for r in rec_list if force or not _complete(out, r)]
    if len(todo) < len(rec_list):
        print(f"{len(rec_list) - len(todo)} of {len(rec_list)} records already done (--force redoes them)")
    workers = min(workers or os.cpu_count() or 1, max(len(todo), 1))
    jobs = [(r, Path(folder), out, settings, batch, png_level) for r in todo]
    n_beats = 0
    with tqdm(total=len(todo), unit="record", desc="scalograms") as bar:
        if workers == 1:
            results = map(_job, jobs)
        else:
            pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
            results = pool.map(_job, jobs)
        try:
            for rec, n in results:
                n_beats += n
                bar.update(1)
                bar.set_postfix(record=rec, beats=n_beats)
        finally:
            if workers > 1:
                pool.shutdown(cancel_futures=True)
    write_manifest(out)
    return n_beats


def write_manifest(out):
    rows = []
    for part in sorted((out / PARTS).glob("*.csv")):
        rows.extend(_read_part(part))
    files.write_text(out / "manifest.csv", _csv(rows))
    return rows

