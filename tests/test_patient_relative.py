"""The new-patient profile's inputs through every stage (issue 21): the beat and the patient's
running template as a 2-channel image (the network sees their difference), RR + morphology
features (14), the small network, stages 2-7 and the device on a record, stream == batch.

Runs once per module on a small real subset (records 105 109 118 119, 40 beats per class, one
epoch per stage): the figures test the plumbing, not accuracy."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import MITDB, REPO, run_script
from helpers import subset_with_manifest
from ecg import model, onnx_check
from jetson import morphology
from jetson import rr_features as rr


NAMES = list(rr.FEATURES) + list(morphology.FEATURES)
PER_CLASS = 40
ON = ("--set", "preprocess.rr_features=true", "--set", "preprocess.morph_features=true",
      "--set", "preprocess.template_channel=true", "--set", "model.rr_features=true",
      "--set", "model.morph_features=true", "--set", 'model.arch="small_cnn"',
      "--set", 'model.image_input="difference"', "--set", 'train.select="last"',
      "--set", 'qat.boxplot_layer="features.1.0"')
FLOAT, QDQ, FP16 = "ecg_model_float.onnx", "ecg_model_quantized.onnx", "ecg_model_fp16.onnx"


@pytest.fixture(scope="module")
def relative_run(mitdb, tmp_path_factory):
    work = tmp_path_factory.mktemp("patient_relative")
    full = work / "full"
    run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", "105", "109", "118", "119", "--out", full, *ON)
    subset_with_manifest(full, work / "data" / "scalogram", PER_CLASS)
    w = ("--workdir", work, *ON)
    run_script("2_train_test_valid_split.py", *w)
    run_script("3_training.py", *w, "--epochs", "2", "--batch-size", "16")
    run_script("5_magnitude_channel_pruning.py", *w, "--epochs", "1", "--batch-size", "16")
    run_script("6_AIMET_quantization.py", *w, "--epochs", "1", "--calibration-images", "64", "--batch-size", "16")
    run_script("7_AIMET_onnx.py", *w, "--no-timing")
    return work


def test_every_stage_keeps_the_inputs_and_the_network(relative_run):
    for name in ("ecg_model.pth", "ecg_model_compact.pth"):
        _, meta = model.load(relative_run / "model_save" / name)
        assert meta["arch"] == "small_cnn" and meta["input_size"] == [2, 100, 100], name
        assert meta["image_input"] == "difference" and meta["rr_features"] == NAMES, name
    train = json.loads((relative_run / "reports" / "train_summary.json").read_text())
    assert train["best_epoch"] == 2   # train.select = last
    for f in (FLOAT, QDQ, FP16):
        m = onnx_check.load_checked(relative_run / "model_save" / f)
        dims = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
        assert dims == {"image": ["batch", 2, 100, 100], "rr": ["batch", 14]}, f
        assert onnx_check.rr_metadata(m)["names"] == NAMES, f
    s = json.loads((relative_run / "reports" / "onnx_summary.json").read_text())
    assert all(r["agreement"] >= 0.995 for r in s["results"] if r["strict"])
    assert {f: s["tensorrt"][f]["tensorrt_8_2"] for f in (FLOAT, QDQ, FP16)} == {FLOAT: "ok", QDQ: "ok", FP16: "ok"}


def device(*args):
    return subprocess.run([sys.executable, str(REPO / "jetson" / "infer_trt.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO / "jetson")


def test_the_device_labels_a_record_alike_in_batch_and_stream(relative_run, tmp_path):
    ms = relative_run / "model_save"
    common = ("--backend", "onnxruntime", "--onnx", ms / QDQ, "--operator", ms / "cwt_operator.npz",
              "--record", MITDB / "119", "--beats", "detect")
    batch, stream = tmp_path / "batch.csv", tmp_path / "stream.csv"
    r = device(*common, "--normalise", "running", "--out", batch, "--score")
    assert r.returncode == 0, r.stderr
    r = device(*common, "--stream", "--chunk-s", "0.5", "--out", stream)
    assert r.returncode == 0, r.stderr
    assert stream.read_text() == batch.read_text()
    labels = [row["predicted"] for row in csv.DictReader(open(batch))]
    assert len(labels) > 1900 and set(labels) <= {"Normal", "LBBB", "RBBB", "PVC"}
    # the model's input follows the signal: another record gives other labels
    other = tmp_path / "105.csv"
    r = device(*common[:-4], "--record", MITDB / "105", "--beats", "detect", "--out", other)
    assert r.returncode == 0, r.stderr
    assert np.mean([row["predicted"] == "PVC" for row in csv.DictReader(open(other))]) != pytest.approx(
        np.mean([lab == "PVC" for lab in labels]))


def test_a_short_recording_uses_the_warm_up_template_and_a_flat_one_is_refused(relative_run, tmp_path):
    """Six seconds of ECG (fewer beats than the template's 32): every beat with a full window is
    labelled, the first ones against a template of the beats seen so far (the documented
    warm-up); a flat lead gets one error line and exit status 2, no crash."""
    import wfdb

    ms = relative_run / "model_save"
    x = wfdb.rdrecord(str(MITDB / "119"), channels=[0], sampto=int(6 * 360)).p_signal[:, 0]
    short, flat = tmp_path / "short.csv", tmp_path / "flat.csv"
    short.write_text("ecg\n" + "\n".join(f"{v:.4f}" for v in x) + "\n")
    flat.write_text("ecg\n" + "0.5\n" * 3600)
    common = ("--backend", "onnxruntime", "--onnx", ms / FLOAT, "--operator", ms / "cwt_operator.npz", "--fs", "360")
    r = device(*common, "--csv", short, "--out", tmp_path / "short_beats.csv")
    assert r.returncode == 0, r.stderr
    assert 3 <= len(list(csv.DictReader(open(tmp_path / "short_beats.csv")))) <= 10
    r = device(*common, "--csv", flat, "--out", tmp_path / "flat_beats.csv")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error:" in r.stderr, r.stderr
    assert not (tmp_path / "flat_beats.csv").exists()
