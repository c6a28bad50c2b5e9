"""Stages 6-7 on the small real subset: QAT for one epoch, both exports, the ONNX checks, and
agreement between the QDQ ONNX and the simulated model."""
import json

import numpy as np
import pytest
import torch

from conftest import run_script
from ecg import dataset, onnx_export


def test_qat_exports_and_reports(quantized):
    out, rep = quantized / "model_save", quantized / "reports"
    for f in ("ecg_model_quantized.onnx", "ecg_model_float.onnx", "ecg_model_quantized_encodings.json",
              "ecg_model_qat.pth"):
        assert (out / f).is_file(), f
    for f in ("weight_ranges_cle.png", "qat_log.csv", "test_result_qat.json", "stage6_test_logits.npz"):
        assert (rep / f).is_file(), f
    assert len((rep / "qat_log.csv").read_text().splitlines()) == 2
    result = json.loads((rep / "test_result_qat.json").read_text())
    assert result["accuracy"] > 0.6, result["accuracy"]  # chance is 0.25
    torch.load(out / "ecg_model_qat.pth", weights_only=True)
    enc = json.loads((out / "ecg_model_quantized_encodings.json").read_text())
    assert enc["activation_encodings"] and enc["param_encodings"]


def test_qdq_onnx_is_tensorrt_ready(quantized):
    m = onnx_export.load_checked(quantized / "model_save" / "ecg_model_quantized.onnx")
    assert onnx_export.opset(m) == 13
    c = onnx_export.qdq_check(m)
    assert c["problems"] == [] and c["quantize_linear"] > 50 and c["quantized_conv_gemm"] > 50
    float_size = (quantized / "model_save" / "ecg_model_float.onnx").stat().st_size
    assert (quantized / "model_save" / "ecg_model_quantized.onnx").stat().st_size < float_size / 3


def test_qdq_onnx_agrees_with_simulation(quantized):
    ref = np.load(quantized / "reports" / "stage6_test_logits.npz")
    data = dataset.ScalogramDataset(quantized / "data" / "test_images", progress=False)
    x = data.images.unsqueeze(1).float().div(255).numpy()
    sess = onnx_export.session(quantized / "model_save" / "ecg_model_quantized.onnx", optimize=False)
    pred = onnx_export.run_all(sess, x).argmax(1)
    assert (pred == ref["qat"].argmax(1)).mean() >= 0.99


def test_stage7_table(quantized):
    s = json.loads((quantized / "reports" / "onnx_summary.json").read_text())
    labels = [r["variant"] for r in s["results"]]
    assert any("ORT_DISABLE_ALL" in v for v in labels) and any("not loadable by TensorRT" in v for v in labels)
    exact = [r for r in s["results"] if "DISABLE_ALL" in r["variant"] or r["variant"].startswith("float")]
    assert all(r["agreement_with_pytorch"] >= 0.995 for r in exact)
    assert (quantized / "model_save" / "cwt_operator.npz").is_file()
    assert (quantized / "model_save" / "ecg_model_quantized_int8.onnx").is_file()


@pytest.mark.parametrize("case", ["missing", "corrupt", "foreign"])
def test_stage7_bad_onnx(tmp_path, case):
    path = tmp_path / "m.onnx"
    if case == "corrupt":
        path.write_bytes(b"\x08\x07garbage")
    elif case == "foreign":
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        torch.onnx.export(net, (torch.zeros(1, 4),), str(path), opset_version=13, dynamo=False)
    proc = run_script("7_AIMET_onnx.py", "--workdir", tmp_path, "--float-onnx", path, check=False)
    assert proc.returncode == 2
    assert {"missing": "ONNX file not found", "corrupt": "corrupt or invalid ONNX",
            "foreign": "not an ONNX model of this pipeline"}[case] in proc.stderr


def test_stage6_bad_input(tmp_path):
    torch.save({"a": torch.zeros(1)}, tmp_path / "foreign.pth")
    proc = run_script("6_AIMET_quantization.py", "--workdir", tmp_path, "--model", tmp_path / "foreign.pth", check=False)
    assert proc.returncode == 2 and "not a model file" in proc.stderr
    proc = run_script("6_AIMET_quantization.py", "--workdir", tmp_path, check=False)
    assert proc.returncode == 2 and "model file not found" in proc.stderr


def test_too_few_calibration_images(pruned, tmp_path):
    proc = run_script("6_AIMET_quantization.py", "--workdir", pruned, "--calibration-images", "100000",
                      "--set", f'paths.model_dir="{tmp_path}"', "--model",
                      pruned / "model_save" / "ecg_model_compact.pth", check=False)
    assert proc.returncode == 2 and "fewer than the 100000 calibration images" in proc.stderr
