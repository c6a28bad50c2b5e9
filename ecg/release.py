"""Copy a finished run's deployable files into models/<name>/ (the shipped models, issue 14).

    python -m ecg.release --workdir runs/aami --config configs/aami.toml     # make release-aami
    python -m ecg.release                                                     # make release (thesis)

What is copied (the pipeline's own file names, so stage 4 and the device take them as they are):
ecg_model_float.onnx, ecg_model_quantized.onnx (TensorRT-8 Q/DQ form), cwt_operator.npz and
ecg_model_compact.pth (weights only). Written beside them:
  release.json                the run's figures (stages 2-7 report files), the settings each stage
                              recorded (reports/settings/), git commit, sizes
  reference_predictions.csv   the device's labels and confidences (jetson/infer_trt.py, ONNX Runtime)
                              with the float and the Q/DQ model on the first [release] seconds of
                              each [release] record: tests/test_shipped_models.py recomputes them,
                              so a stale or corrupt model cannot pass
  SHA256SUMS                  `sha256sum -c SHA256SUMS` format, every file above
The folder is built beside models/<name> and swapped in whole: a failed release leaves the old one.
"""
import csv
import datetime
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import config, records
from .errors import UserError, main_guard
from .records import sha256

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("float_onnx", "quantized_onnx", "cwt_operator", "pruned_model")   # [artifacts] keys
REPORTS = {"split": "split_summary.json", "train": "train_summary.json", "test_float": "test_result.json",
           "test_pruned": "test_result_pruned.json", "test_qat": "test_result_qat.json",
           "prune": "prune_summary.json", "onnx": "onnx_summary.json"}
# release.json's settings: each section as the stage that used it recorded it (config.record);
# stage 1's are the scalogram folder's own stamp (preprocess.made_with)
SETTINGS = {"split": "split", "model": "train", "train": "train", "prune": "prune", "qat": "qat"}
PREDICTIONS = "reference_predictions.csv"
VARIANTS = (("float", "ecg_model_float.onnx"), ("qdq", "ecg_model_quantized.onnx"))


def read_sums(folder):
    """{file name: sha256} from folder/SHA256SUMS."""
    sums = {}
    for line in (Path(folder) / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(None, 1)
        sums[name.lstrip("*")] = digest
    return sums


def excerpt(record, seconds, out_dir):
    """The first `seconds` of a WFDB record (all leads, the same digital samples) as a new record in
    out_dir; its path without suffix."""
    import wfdb

    src = wfdb.rdrecord(str(record), physical=False)
    d = src.d_signal[:int(seconds * src.fs)]
    name = Path(record).name
    wfdb.wrsamp(name, fs=src.fs, units=src.units, sig_name=src.sig_name, d_signal=d, fmt=["16"] * d.shape[1],
                adc_gain=src.adc_gain, baseline=src.baseline, write_dir=str(out_dir))
    return Path(out_dir) / name


def compact_operator(src, dest):
    """Copy a device operator file, rewriting one from before the compact form (a 32 MB matrix)
    as its per-scale kernels (0.3 MB; the device rebuilds the same matrix bit for bit)."""
    import numpy as np

    from .scalogram import operator_kernels

    try:
        with np.load(src) as z:
            arrays = {k: z[k] for k in z.files}
        if "operator" in arrays:
            op = arrays.pop("operator")
            arrays["operator_kernels"] = operator_kernels(op, op.shape[0])
    except (OSError, ValueError, AssertionError) as e:
        raise UserError(f"{src}: not a CWT operator file of this pipeline ({e}); re-run stage 7") from None
    with open(dest, "wb") as f:
        np.savez(f, **arrays)


def device_predictions(model_dir, record_paths, seconds):
    """[(record, variant, sample, predicted, confidence)] from jetson/infer_trt.py (ONNX Runtime,
    detected beats) on the first `seconds` of each record, with each ONNX file of model_dir."""
    model_dir = Path(model_dir).resolve()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for record in record_paths:
            short = excerpt(record, seconds, tmp)
            for variant, onnx_name in VARIANTS:
                out = Path(tmp) / f"{short.name}_{variant}.csv"
                cmd = [sys.executable, "infer_trt.py", "--backend", "onnxruntime", "--onnx",
                       str(model_dir / onnx_name), "--operator", str(model_dir / "cwt_operator.npz"),
                       "--record", str(short), "--out", str(out)]
                run = subprocess.run(cmd, cwd=ROOT / "jetson", capture_output=True, text=True)
                if run.returncode != 0:
                    raise UserError(f"{model_dir / onnx_name}: the device run on {record} failed: "
                                    f"{run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}")
                with open(out, newline="") as f:
                    rows += [(short.name, variant, int(r["sample"]), r["predicted"], float(r["confidence"]))
                             for r in csv.DictReader(f)]
    return rows


def predictions_csv(rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["record", "model", "sample", "predicted", "confidence"])
    w.writerows([r[:4] + (f"{r[4]:.6f}",) for r in rows])
    return buf.getvalue()


def read_predictions(path):
    with open(path, newline="") as f:
        return [(r["record"], r["model"], int(r["sample"]), r["predicted"], float(r["confidence"]))
                for r in csv.DictReader(f)]


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def collect(cfg):
    """{shipped file name: source path}, refusing a run that has not written all of them. The
    shipped names are the pipeline's defaults whatever the run's [artifacts] called them."""
    files = {}
    for key in SHIPPED:
        src = cfg.artifact(key)
        if not src.is_file():
            raise UserError(f"{src}: missing; run the pipeline through stage 7 first (make pipeline)")
        files[config.default(f"artifacts.{key}")] = src
    return files


def read_reports(rep):
    results = {}
    for key, name in REPORTS.items():
        if (rep / name).is_file():
            try:
                results[key] = json.loads((rep / name).read_text())
            except ValueError as e:
                raise UserError(f"{rep / name}: not a readable report ({e}); re-run its stage") from None
    if "test_float" not in results or "onnx" not in results:
        raise UserError(f"{rep}: test_result.json and onnx_summary.json missing; run stages 4 and 7 first")
    return results


def used_settings(cfg, rep):
    """(settings, where each section came from): the section as its stage recorded it in
    reports/settings/<stage>.json, else, for a run made before stages recorded their settings,
    the config given to the release (then --set the run's overrides here too)."""
    from . import preprocess

    stamped = preprocess.stored_settings(cfg.path("scalogram_dir"))
    settings = {"preprocess": preprocess.made_with(cfg)}
    source = {"preprocess": "the scalogram folder's stamp (stage 1)" if stamped else
              "the config given to the release (no scalogram folder stamp)"}
    recorded = {}
    for section, stage in SETTINGS.items():
        path = rep / "settings" / f"{stage}.json"
        if stage not in recorded and path.is_file():
            try:
                recorded[stage] = json.loads(path.read_text())["settings"]
                if not isinstance(recorded[stage], dict):
                    raise ValueError("settings is not a table")
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise UserError(f"{path}: not a readable settings record ({e}); re-run its stage") from None
        if section in recorded.get(stage, {}):
            settings[section], source[section] = recorded[stage][section], f"reports/settings/{stage}.json"
        else:
            settings[section], source[section] = cfg[section], "the config given to the release (the stage recorded none)"
    return settings, source


def check_destination(dest):
    """A release may replace only an earlier release (a folder with SHA256SUMS and release.json)."""
    if dest.exists() and not ((dest / "SHA256SUMS").is_file() and (dest / "release.json").is_file()):
        raise UserError(f"{dest}: exists and is not a model release (no SHA256SUMS and release.json in it); "
                        "give another --name or --out")
    for stale in dest.parent.glob(f".{dest.name}.*"):   # folders of a release killed mid-way
        if stale.is_dir() and stale.name.endswith((".tmp", ".old")):
            shutil.rmtree(stale, ignore_errors=True)


def release(cfg, name, out_root, record_names, seconds):
    if not record_names or not seconds > 0:
        raise UserError(f"[release] records = {record_names}, seconds = {seconds}: the reference predictions need "
                        "at least one record and a positive duration")
    files = collect(cfg)
    results = read_reports(cfg.path("reports_dir"))
    settings, settings_from = used_settings(cfg, cfg.path("reports_dir"))
    mitdb = records.data_dir(cfg)
    for r in record_names:
        if not (mitdb / f"{r}.hea").is_file():
            raise UserError(f"{mitdb / r}.hea: record not found (check [release] records / --records)")
    dest = Path(out_root) / name
    check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=dest.parent))
    old = None
    try:
        for fname, src in files.items():
            if fname == config.default("artifacts.cwt_operator"):
                compact_operator(src, tmp / fname)
            else:
                shutil.copyfile(src, tmp / fname)
        rows = device_predictions(tmp, [mitdb / r for r in record_names], seconds)
        (tmp / PREDICTIONS).write_text(predictions_csv(rows))
        meta = {"name": name, "made_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "git_commit": git_commit(), "settings": settings, "settings_from": settings_from,
                "reference_predictions": {"records": list(record_names), "seconds": seconds,
                                          "beats": len(rows) // len(VARIANTS)},
                "results": results,
                "sizes_bytes": {f: (tmp / f).stat().st_size for f in sorted(files)}}
        (tmp / "release.json").write_text(json.dumps(meta, indent=1) + "\n")
        names = sorted(p.name for p in tmp.iterdir())
        (tmp / "SHA256SUMS").write_text("".join(f"{sha256(tmp / n)}  {n}\n" for n in names))
        os.chmod(tmp, 0o755)
        if dest.exists():
            old = dest.with_name(f".{name}.old")
            dest.rename(old)
        tmp.rename(dest)
    except BaseException:
        if old is not None and old.exists() and not dest.exists():
            old.rename(dest)   # the earlier release stays in place
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest, meta


@main_guard
def main(argv=None):
    p = config.parser(__doc__.splitlines()[0])
    config.flag(p, "--name", "release.name", help="folder under the release root (models/<name>)")
    config.flag(p, "--out", "release.dir", help="release root, relative to the repository")
    config.flag(p, "--records", "release.records", nargs="+", metavar="RECORD",
                help="MIT-BIH records whose first seconds give the reference predictions")
    config.flag(p, "--seconds", "release.seconds", help="seconds of each record for the reference predictions")
    args = p.parse_args(argv)
    cfg = config.load(args)
    r = cfg["release"]
    out_root = Path(r["dir"]) if Path(r["dir"]).is_absolute() else ROOT / r["dir"]
    dest, meta = release(cfg, r["name"], out_root, [str(x) for x in r["records"]], float(r["seconds"]))
    total = sum(meta["sizes_bytes"].values())
    print(f"wrote {dest} ({total / 1e6:.1f} MB of models; {meta['reference_predictions']['beats']} reference beats "
          f"from {', '.join(meta['reference_predictions']['records'])}); commit it with git add {dest}")


if __name__ == "__main__":
    main()
