"""Does a record recorded at another rate get the same labels? The device path at 360 Hz vs the
same record resampled to 128, 250 and 500 Hz (scipy's resample_poly, as a recorder's data would
come), per record and in total.

    .venv/bin/python bench/resampling_agreement.py --model-dir models/aami [--records 119 208 ...]
        [--seconds 480] [--out docs/results/resampling/aami.md]

For each beat labelled at 360 Hz, the beat found within 150 ms in the resampled run must carry
the same label. Besides the agreement it counts the beats whose aligned R peak moved by a sample
or more (at the model's 360 Hz) and how many of the changed labels had an unmoved peak, i.e.
came from the signal itself (content the lower rate cannot carry, and the resampling filter),
not from the alignment; and the median confidence at 360 Hz of the beats that changed (a
well-separated beat rarely changes). Runs jetson/ in-process (ONNX Runtime); no training code.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # run as python bench/NAME.py

from jetson import labeller, runners, scalograms, streaming  # noqa: E402
from jetson.signal_input import read_wfdb  # noqa: E402

RATES = {128: (16, 45), 250: (25, 36), 500: (25, 18)}   # fs: (up, down) from 360 Hz


def labelled_beats(op, classify, x, fs, options=None):
    """(model-rate peaks, labels, confidences) of the beats the device classifies; `options`:
    labeller.engine_options of the model (its morphology features, template channel)."""
    beats = [b for b in streaming.BeatEngine(op, fs, classify, "record", **(options or {})).push(x, final=True)
             if b[3] is not None]
    return (np.array([b[1] for b in beats]), np.array([b[3] for b in beats]), np.array([b[4] for b in beats]))


def compare(ref, got, tol):
    """Counts for the beats of `ref` (360 Hz) against `got` (resampled): each reference beat takes the
    nearest beat of `got` within tol (not one to one; extra beats at the other rate are not counted)."""
    p0, l0, c0 = ref
    p, lab, _ = got
    if len(p) == 0:   # nothing found at the other rate: every beat unmatched
        p, lab = np.array([-10 ** 9]), np.array([-1])
    k = np.clip(np.searchsorted(p, p0), 0, len(p) - 1)
    left = np.maximum(k - 1, 0)
    k = np.where(np.abs(p[left] - p0) <= np.abs(p[k] - p0), left, k)
    matched = np.abs(p[k] - p0) <= tol
    same_peak = matched & (p[k] == p0)
    changed = matched & (lab[k] != l0)
    return {"beats": len(p0), "agree": int((matched & ~changed).sum()), "unmatched": int((~matched).sum()),
            "peak_moved": int((matched & ~same_peak).sum()), "changed": int(changed.sum()),
            "changed_same_peak": int((changed & same_peak).sum()),
            "conf_changed": c0[changed].tolist()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True, help="folder with ecg_model_float.onnx and cwt_operator.npz")
    p.add_argument("--onnx", default="ecg_model_float.onnx", help="model file in --model-dir (default: the float ONNX)")
    p.add_argument("--mitdb", default=None, help="MIT-BIH folder (default: $MITDB_DIR)")
    p.add_argument("--records", nargs="+", default=["100", "119", "200", "208", "213", "231", "233"])
    p.add_argument("--seconds", type=float, default=480.0, help="first seconds of each record (default: 480)")
    p.add_argument("--out", default=None, help="also write the table (markdown) here")
    args = p.parse_args()
    import os

    mitdb = Path(args.mitdb or os.environ.get("MITDB_DIR", REPO / "data" / "mitdb"))
    model_dir = Path(args.model_dir)
    op = scalograms.load_operator(str(model_dir / "cwt_operator.npz"))
    runner = runners.OrtRunner(str(model_dir / args.onnx))
    classify, options = runners.softmax_classifier(runner, 256), labeller.engine_options(runner)
    tol = int(0.15 * float(op["fs"]))
    rows, total = [], {fs: {} for fs in RATES}
    t0 = time.perf_counter()
    for rec in args.records:
        sig = read_wfdb(str(mitdb / rec))
        x = sig.x[:int(args.seconds * sig.fs)]
        ref = labelled_beats(op, classify, x, sig.fs, options)
        for fs, (up, down) in RATES.items():
            c = compare(ref, labelled_beats(op, classify, resample_poly(x, up, down), fs, options), tol)
            rows.append((rec, fs, c))
            for key, v in c.items():
                total[fs][key] = total[fs].get(key, 0 if key != "conf_changed" else []) + v
        print(f"{rec}: " + "  ".join(f"{fs} Hz {c['agree'] / max(c['beats'], 1):.2%}" for r, fs, c in rows
                                     if r == rec), flush=True)
    head = ("| record | rate (Hz) | beats | same label | peak moved | changed | of which peak unmoved | "
            "median conf. of changed |\n|---|---|---|---|---|---|---|---|\n")

    def line(name, fs, c):
        med = f"{np.median(c['conf_changed']):.2f}" if c["conf_changed"] else "—"
        return (f"| {name} | {fs} | {c['beats']} | {c['agree'] / max(c['beats'], 1):.2%} | {c['peak_moved']} | "
                f"{c['changed']} | {c['changed_same_peak']} | {med} |\n")

    table = head + "".join(line(r, fs, c) for r, fs, c in rows) + "".join(
        line("**all**", fs, total[fs]) for fs in RATES)
    text = (f"Model: `{model_dir / args.onnx}`; records {', '.join(args.records)}, first {args.seconds:g} s each; "
            f"device path (ONNX Runtime, detected beats, record normalisation); "
            f"{time.perf_counter() - t0:.0f} s.\n\n" + table)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.out + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
