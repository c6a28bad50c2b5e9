"""A trained model on the device path, end to end on whole records: detected beats vs reference beats.

    .venv/bin/python bench/device_records.py --config configs/aami.toml --workdir runs/aami \
        [--model runs/aami/model_save/ecg_model.pth] [--records ds2] [--out docs/results/aami/device]
    .venv/bin/python bench/device_records.py ... --onnx models/aami/ecg_model_float.onnx \
        models/aami/ecg_model_quantized.onnx --operator models/aami/cwt_operator.npz --beats detect

Exports the model as a float ONNX and writes the device's CWT operator (as stages 6 and 7 do,
into OUT/model/), then runs `jetson/infer_trt.py --backend onnxruntime --records` twice over the
records: once with the device's own QRS detector (`--beats detect`, what a patient's device does)
and once with the cardiologists' annotations (`--beats annotations`, the lab figure), each scored
with EC57 matching. Prints both gross tables side by side and writes them to OUT/summary.md, with the macro F1 over
N, S, V and over N, S, V, F and, per record, the share of its N beats called V or F.
`--onnx` evaluates given ONNX files (e.g. a release's float and Q/DQ files) instead of exporting.
`--records ds2` (default) = the config's split.ds2, the test patients of the AAMI profile.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ecg import config, model, onnx_export, preprocess, records, scalogram  # noqa: E402
from ecg.errors import main_guard  # noqa: E402


def run_device(onnx_path, operator, folder, recs, beats, out_dir):
    cmd = [sys.executable, str(REPO / "jetson" / "infer_trt.py"), "--backend", "onnxruntime", "--onnx", str(onnx_path),
           "--operator", str(operator), "--records", str(folder), *recs, "--beats", beats, "--score",
           "--out-dir", str(out_dir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO / "jetson", capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"infer_trt.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads((Path(out_dir) / "scores.json").read_text()), time.perf_counter() - t0


def macro_f1s(cls):
    """(macro F1 over N,S,V, macro F1 over N,S,V,F) from a gross classification block (AAMI)."""
    per = cls["per_class"]
    f1 = {c: per[c]["f1"] or 0.0 for c in per}
    nsv = [f1[c] for c in ("N", "S", "V") if c in f1]
    nsvf = [f1[c] for c in ("N", "S", "V", "F") if c in f1]
    return (sum(nsv) / len(nsv) if nsv else None, sum(nsvf) / len(nsvf) if nsvf else None)


def n_called_vf(out_dir, recs):
    """{record: (N beats, share of them called V or F)} from infer_trt.py's per-record score files."""
    rates = {}
    for rec in recs:
        cls = json.loads((Path(out_dir) / f"{rec}.score.json").read_text()).get("classification")
        if not cls or "N" not in cls["classes"]:
            continue
        c = cls["classes"]
        row = cls["confusion"][c.index("N")]
        n = sum(row)
        bad = sum(row[c.index(k)] for k in ("V", "F") if k in c)
        rates[rec] = (n, bad / n if n else 0.0)
    return rates


def gross_line(name, s):
    """One markdown row from infer_trt.py's scores.json (percentages as it writes them)."""
    det, cls = s["gross"]["detection"], s["gross"]["classification"]
    per = cls["per_class"]
    present = [c for c, v in per.items() if v["n"]]
    f1s = [per[c]["f1"] or 0.0 for c in present]
    f1 = ", ".join(f"{c} {per[c]['f1'] or 0:.3f}" for c in present)
    sp = ", ".join(f"{c} {per[c]['se'] or 0:.1f}/{per[c]['ppv'] or 0:.1f}" for c in present)
    nsv, nsvf = macro_f1s(cls)
    both = f"{nsv:.4f} / {nsvf:.4f}" if nsv is not None and nsvf is not None else "-"
    return (f"| {name} | {det['se']:.2f} / {det['ppv']:.2f} | {cls['matched_beats']} | {cls['accuracy']:.4f} | "
            f"{sum(f1s) / len(f1s):.4f} | {both} | {f1} | {sp} |")


@main_guard
def main():
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--model", help="model file (default: artifacts.trained_model of the config)")
    p.add_argument("--records", nargs="+", default=["ds2"], help="records, or 'ds2' (split.ds2)")
    p.add_argument("--out", default="docs/results/aami/device", help="output folder")
    p.add_argument("--data-dir", help="MIT-BIH folder (default: $MITDB_DIR, else paths.data_dir)")
    p.add_argument("--onnx", nargs="+", help="ONNX files to evaluate as they are (needs --operator)")
    p.add_argument("--operator", help="the CWT operator file of --onnx (a release's cwt_operator.npz)")
    p.add_argument("--beats", nargs="+", default=["detect", "annotations"], choices=["detect", "annotations"],
                   help="beats from the device's detector, the reference annotations, or both (default)")
    args = p.parse_args()
    cfg = config.load(args)
    out = Path(args.out).resolve()
    (out / "model").mkdir(parents=True, exist_ok=True)
    if args.onnx:
        if not args.operator:
            raise SystemExit("--onnx needs --operator")
        variants, operator = [Path(o).resolve() for o in args.onnx], Path(args.operator).resolve()
        what = ", ".join(str(v) for v in variants)
    else:
        src = Path(args.model) if args.model else cfg.artifact("trained_model")
        net, meta = model.load(src)
        onnx_path = out / "model" / "ecg_model_float.onnx"
        onnx_export.export_float(net, onnx_path, meta["classes"], model.example_inputs(meta),
                                 onnx_export.rr_metadata(meta))
        operator = out / "model" / "cwt_operator.npz"
        scalogram.write_device_operator(operator, preprocess.made_with(cfg), meta["classes"])
        variants = [onnx_path]
        what = f"{src} ({', '.join(meta['classes'])}; features: {len(meta.get('rr_features') or [])}), float ONNX"
    folder = records.data_dir(cfg, args.data_dir)
    recs = cfg["split"]["ds2"] if args.records == ["ds2"] else args.records
    rows, per_record = [], {}
    for onnx_file in variants:
        for beats in args.beats:
            name = f"{onnx_file.stem} {beats}" if len(variants) > 1 else beats
            sub = out / (f"{onnx_file.stem}_{beats}" if len(variants) > 1 else beats)
            scores, seconds = run_device(onnx_file, operator, folder, recs, beats, sub)
            rows.append(gross_line(f"{name} ({seconds:.0f} s)", scores))
            per_record[name] = n_called_vf(sub, recs)
    head = ("| beats | detection Se / +P (%) | matched beats | accuracy | macro F1 (classes present) "
            "| macro F1 N,S,V / N,S,V,F | F1 per class | Se / +P per class (%) |\n|---|---|---|---|---|---|---|---|")
    names = list(per_record)
    table = ("\nShare of each record's N beats called V or F (records over 10 % marked *):\n\n| record | N beats | "
             + " | ".join(names) + " |\n|---|---|" + "---|" * len(names) + "\n")
    for rec in recs:
        cells = [per_record[n].get(rec) for n in names]
        if all(c is None for c in cells):
            continue
        n_beats = next(c[0] for c in cells if c is not None)
        table += f"| {rec} | {n_beats} | " + " | ".join(
            "-" if c is None else f"{100 * c[1]:.1f} %{' *' if c[1] > 0.10 else ''}" for c in cells) + " |\n"
    over = {n: sum(1 for v in per_record[n].values() if v[1] > 0.10) for n in names}
    table += "\nRecords over 10 %: " + ", ".join(f"{n} {k}" for n, k in over.items()) + "\n"
    text = (f"Model {what} through jetson/infer_trt.py (ONNX Runtime), records {' '.join(recs)}\n\n"
            + head + "\n" + "\n".join(rows) + "\n" + table)
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
