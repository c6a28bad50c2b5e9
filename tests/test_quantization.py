"""Stages 6-7 on the small real subset: QAT for one epoch, the exports, the ONNX and TensorRT
checks, agreement between the Q/DQ ONNX files and the simulated model, and stage 7's table."""
import json

import numpy as np
import pytest
import torch
from onnx import numpy_helper

from conftest import run_main, run_script
from ecg import dataset, onnx_check, trt_compat

FLOAT, QDQ, QDQ_INT8_WEIGHTS = "ecg_model_float.onnx", "ecg_model_quantized.onnx", "ecg_model_qdq_int8_weights.onnx"
FP16, DYNAMIC = "ecg_model_fp16.onnx", "ecg_model_quantized_int8.onnx"


def test_qat_exports_and_reports(quantized):
    out, rep = quantized / "model_save", quantized / "reports"
    for f in (QDQ, QDQ_INT8_WEIGHTS, FLOAT, FP16, DYNAMIC, "ecg_model_quantized_encodings.json", "ecg_model_qat.pth",
              "stage6_test_logits.npz"):
        assert (out / f).is_file(), f
    for f in ("weight_ranges_cle.png", "qat_log.csv", "test_result_qat.json"):
        assert (rep / f).is_file(), f
    assert len((rep / "qat_log.csv").read_text().splitlines()) == 2
    result = json.loads((rep / "test_result_qat.json").read_text())
    assert result["accuracy"] > 0.6, result["accuracy"]  # chance is 0.25
    torch.load(out / "ecg_model_qat.pth", weights_only=True)
    enc = json.loads((out / "ecg_model_quantized_encodings.json").read_text())
    assert enc["activation_encodings"] and enc["param_encodings"]


def test_qdq_onnx_is_the_tensorrt8_form(quantized):
    """Float weights -> QuantizeLinear -> DequantizeLinear (per channel, axis 0, one positive scale
    per output channel, int8 zero points 0) on every Conv/Gemm; activations per tensor."""
    m = onnx_check.load_checked(quantized / "model_save" / QDQ)
    assert trt_compat.violations(m) == []
    s = onnx_check.qdq_summary(m)
    assert s["problems"] == [] and s["quantize_linear"] > 50 and s["quantized_conv_gemm"] > 50
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    weights = 0
    for node in m.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            dq = producer[node.input[1]]
            q = producer[dq.input[0]]
            assert q.op_type == "QuantizeLinear" and inits[q.input[0]].dtype == np.float32, node.name
            w, scale = inits[q.input[0]], inits[q.input[1]]
            assert [a.i for a in q.attribute if a.name == "axis"] == [0] and scale.shape == (w.shape[0],)
            assert np.all(scale > 0) and np.all(inits[q.input[2]] == 0) and inits[q.input[2]].dtype == np.int8
            weights += 1
        elif node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            assert inits[node.input[1]].size == 1 and inits[node.input[2]] == 0  # activations: per tensor, symmetric
    assert weights == s["quantized_conv_gemm"]
    assert not [n for n, a in inits.items() if a.dtype == np.int8 and a.size > 1 and np.any(a)]  # no int8 weights


def test_every_export_against_tensorrt_rules(quantized):
    out = quantized / "model_save"
    for f in (FLOAT, QDQ, FP16):
        assert trt_compat.violations(onnx_check.load_checked(out / f)) == [], f
    compact = onnx_check.load_checked(out / QDQ_INT8_WEIGHTS)  # the old form: INT8 initializers into DequantizeLinear
    found = trt_compat.violations(compact)
    assert {v.rule for v in found} == {"int8-weights"}
    assert len(found) == onnx_check.qdq_summary(compact)["quantized_conv_gemm"]
    assert trt_compat.violations(compact, allow_int8_weights=True) == []
    assert "op" in {v.rule for v in trt_compat.violations(onnx_check.load_checked(out / DYNAMIC))}
    assert (out / QDQ_INT8_WEIGHTS).stat().st_size < (out / FLOAT).stat().st_size / 3


def test_qdq_onnx_agrees_with_simulation(quantized):
    ref = np.load(quantized / "model_save" / "stage6_test_logits.npz")
    data = dataset.ScalogramDataset(quantized / "data" / "test_images", progress=False)
    x = data.images.unsqueeze(1).float().div(255).numpy()
    logits = {f: onnx_check.run_all(onnx_check.session(quantized / "model_save" / f, optimize=False), x)
              for f in (QDQ, QDQ_INT8_WEIGHTS)}
    assert (logits[QDQ].argmax(1) == ref["qat"].argmax(1)).mean() >= 0.99
    # both forms hold the same quantized weights
    assert (logits[QDQ].argmax(1) == logits[QDQ_INT8_WEIGHTS].argmax(1)).all()
    np.testing.assert_allclose(logits[QDQ], logits[QDQ_INT8_WEIGHTS], rtol=0, atol=1e-5)


def test_stage7_table(quantized):
    s = json.loads((quantized / "reports" / "onnx_summary.json").read_text())
    rows = {r["variant"]: r for r in s["results"]}
    assert any("ORT_DISABLE_ALL" in v for v in rows) and any("not loadable by TensorRT" in v for v in rows)
    fp16 = next(r for v, r in rows.items() if v.startswith("FP16"))
    assert fp16["reference"] == "FP32 ONNX" and fp16["agreement"] >= 0.995 and fp16["file"] == FP16
    assert all(r["agreement"] >= 0.995 for r in rows.values() if r["strict"])
    for r in rows.values():   # per-class Se/+P/F1 of every variant (the README's float and Q/DQ rows)
        cm = np.array(r["confusion_matrix"])
        assert cm.sum() == s["test_images"] and np.trace(cm) / cm.sum() == pytest.approx(r["accuracy"])
        assert set(r["per_class"]) == set(rows[next(iter(rows))]["per_class"]) and len(r["per_class"]) == len(cm)
    assert {r["file"] for r in rows.values() if r["strict"]} == {FLOAT, FP16, QDQ, QDQ_INT8_WEIGHTS}
    trt = s["tensorrt"]
    assert {f: trt[f]["tensorrt_8_2"] for f in (FLOAT, QDQ, FP16)} == {FLOAT: "ok", QDQ: "ok", FP16: "ok"}
    assert trt[QDQ_INT8_WEIGHTS]["tensorrt_8_2"].startswith("no: ") and "int8-weights violations" in trt[QDQ_INT8_WEIGHTS]["tensorrt_8_2"]
    assert trt[QDQ_INT8_WEIGHTS]["tensorrt_10_form"] == "ok"
    assert trt[DYNAMIC]["tensorrt_8_2"].startswith("no: ") and " op violations" in trt[DYNAMIC]["tensorrt_8_2"]
    text = (quantized / "reports" / "onnx_summary.txt").read_text()
    assert "TensorRT 8.2: ok" in text and "FP16" in text
    assert (quantized / "model_save" / "cwt_operator.npz").is_file()


def test_stage7_refuses_int8_weight_initializers(quantized):
    """The INT8-initializer Q/DQ form as the INT8 engine's file: TensorRT 8.x would not parse it."""
    proc = run_script("7_AIMET_onnx.py", "--workdir", quantized, "--qdq-onnx",
                      quantized / "model_save" / QDQ_INT8_WEIGHTS, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {quantized / 'model_save' / QDQ_INT8_WEIGHTS}: TensorRT 8.2 would not parse it")
    assert "(DequantizeLinear): int8-weights" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_stage7_refuses_a_test_split_stage6_did_not_evaluate(quantized):
    """Stages 1-2 re-run after stage 6 can leave the same file names with other beats: the split id
    stage 6 stored with its logits must match, or stage 7 compares against the wrong references."""
    from ecg import split

    stamp = quantized / "data" / "test_images" / split.STAMP
    before = stamp.read_text()
    try:
        stamp.write_text("another-run\n")
        proc = run_script("7_AIMET_onnx.py", "--workdir", quantized, "--no-timing", check=False)
    finally:
        stamp.write_text(before)
    assert proc.returncode == 2 and "made by another run of stage 2 than the one stage 6 evaluated" in proc.stderr


@pytest.mark.parametrize("case", ["missing", "corrupt", "foreign"])
def test_stage7_bad_onnx(tmp_path, case):
    path = tmp_path / "m.onnx"
    if case == "corrupt":
        path.write_bytes(b"\x08\x07garbage")
    elif case == "foreign":
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        torch.onnx.export(net, (torch.zeros(1, 4),), str(path), opset_version=13, dynamo=False)
    proc = run_main("7_AIMET_onnx.py", "--workdir", tmp_path, "--float-onnx", path, check=False)
    assert proc.returncode == 2
    assert {"missing": "ONNX file not found", "corrupt": "corrupt or invalid ONNX",
            "foreign": "not an ONNX model of this pipeline"}[case] in proc.stderr


def test_stage6_bad_input(tmp_path):
    torch.save({"a": torch.zeros(1)}, tmp_path / "foreign.pth")
    proc = run_main("6_AIMET_quantization.py", "--workdir", tmp_path, "--model", tmp_path / "foreign.pth", check=False)
    assert proc.returncode == 2 and "not a model file" in proc.stderr
    proc = run_main("6_AIMET_quantization.py", "--workdir", tmp_path, check=False)
    assert proc.returncode == 2 and "model file not found" in proc.stderr


def test_too_few_calibration_images(pruned, tmp_path):
    proc = run_script("6_AIMET_quantization.py", "--workdir", pruned, "--calibration-images", "100000",
                      "--set", f'paths.model_dir="{tmp_path}"', "--model",
                      pruned / "model_save" / "ecg_model_compact.pth", check=False)
    assert proc.returncode == 2 and "fewer than the 100000 calibration images" in proc.stderr
