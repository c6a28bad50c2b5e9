"""A trained model on the device path, end to end on whole records: detected beats vs reference beats.

    .venv/bin/python bench/device_records.py --config configs/aami.toml --workdir runs/aami \
        [--model runs/aami/model_save/ecg_model.pth] [--records ds2] [--out docs/results/aami/device]

Exports the model as a float ONNX and writes the device's CWT operator (as stages 6 and 7 do,
into OUT/model/), then runs `jetson/infer_trt.py --backend onnxruntime --records` twice over the
records: once with the device's own QRS detector (`--beats detect`, what a patient's device does)
and once with the cardiologists' annotations (`--beats annotations`, the lab figure), each scored
with EC57 matching. Prints both gross tables side by side and writes them to OUT/summary.md.
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


def gross_line(name, s):
    """One markdown row from infer_trt.py's scores.json (percentages as it writes them)."""
    det, cls = s["gross"]["detection"], s["gross"]["classification"]
    per = cls["per_class"]
    present = [c for c, v in per.items() if v["n"]]
    f1s = [per[c]["f1"] or 0.0 for c in present]
    f1 = ", ".join(f"{c} {per[c]['f1'] or 0:.3f}" for c in present)
    sp = ", ".join(f"{c} {per[c]['se'] or 0:.1f}/{per[c]['ppv'] or 0:.1f}" for c in present)
    return (f"| {name} | {det['se']:.2f} / {det['ppv']:.2f} | {cls['matched_beats']} | {cls['accuracy']:.4f} | "
            f"{sum(f1s) / len(f1s):.4f} | {f1} | {sp} |")


@main_guard
def main():
    p = config.parser(__doc__.splitlines()[0])
    p.add_argument("--model", help="model file (default: artifacts.trained_model of the config)")
    p.add_argument("--records", nargs="+", default=["ds2"], help="records, or 'ds2' (split.ds2)")
    p.add_argument("--out", default="docs/results/aami/device", help="output folder")
    p.add_argument("--data-dir", help="MIT-BIH folder (default: $MITDB_DIR, else paths.data_dir)")
    args = p.parse_args()
    cfg = config.load(args)
    out = Path(args.out).resolve()
    (out / "model").mkdir(parents=True, exist_ok=True)
    src = Path(args.model) if args.model else cfg.artifact("trained_model")
    net, meta = model.load(src)
    onnx_path = out / "model" / "ecg_model_float.onnx"
    onnx_export.export_float(net, onnx_path, meta["classes"], model.example_inputs(meta),
                             onnx_export.rr_metadata(meta))
    operator = out / "model" / "cwt_operator.npz"
    scalogram.write_device_operator(operator, preprocess.made_with(cfg), meta["classes"])
    folder = records.data_dir(cfg, args.data_dir)
    recs = cfg["split"]["ds2"] if args.records == ["ds2"] else args.records
    rows, results = [], {}
    for beats in ("detect", "annotations"):
        scores, seconds = run_device(onnx_path, operator, folder, recs, beats, out / beats)
        results[beats] = {"seconds": seconds, "scores": scores}
        rows.append(gross_line(f"{beats} ({seconds:.0f} s)", scores))
    head = ("| beats | detection Se / +P (%) | matched beats | accuracy | macro F1 (classes present) | F1 per class "
            "| Se / +P per class (%) |\n|---|---|---|---|---|---|---|")
    text = (f"Model {src} ({', '.join(meta['classes'])}; RR features: {bool(meta.get('rr_features'))}), "
            f"float ONNX through jetson/infer_trt.py (ONNX Runtime), records {' '.join(recs)}\n\n"
            + head + "\n" + "\n".join(rows) + "\n")
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
