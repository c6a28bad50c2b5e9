"""jetson/: Python 3.6 compatible, free of training code; precision choice, engine checks, and
infer_trt.py end to end through its ONNX Runtime backend (folder and annotated-record inputs;
raw ECG, streams and scoring: test_device_record.py)."""
import ast
import csv
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO
from jetson import common

JETSON = REPO / "jetson"


def infer(*args):
    return subprocess.run([sys.executable, str(JETSON / "infer_trt.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=JETSON)


def vermin(path):
    exe = shutil.which("vermin", path=str(REPO / ".venv" / "bin")) or shutil.which("vermin")
    return subprocess.run([exe, "--target=3.6-", "--no-tips", "--violations", str(path)], capture_output=True,
                          text=True)


def test_python36_compatible(tmp_path):
    proc = vermin(JETSON)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (tmp_path / "new.py").write_text("if (n := 3):\n    print(f'{n=}')\n")
    assert vermin(tmp_path).returncode != 0  # the check does catch 3.8+ syntax


def test_no_training_dependencies():
    for path in JETSON.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for n in names:
                assert n.split(".")[0] not in {"torch", "torchvision", "ecg", "aimet_torch", "pywt", "sklearn"}, (path, n)


def jetson_modules():
    return sorted(p.stem for p in JETSON.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", jetson_modules())
def test_each_jetson_module_loads_alone(name):
    """jetson/ is a package with relative imports: every module imports in a fresh interpreter
    by itself (those ecg/ uses among them), loads each of its siblings once under one name, and
    brings in no training code."""
    code = ("import sys, importlib; importlib.import_module('jetson.{}'); "
            "flat = sorted(m for m in sys.modules if m in {}); "
            "train = sorted(m for m in ('torch', 'ecg', 'pywt', 'sklearn') if m in sys.modules); "
            "print(flat, train)").format(name, jetson_modules())
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[] []", proc.stdout   # no sibling also loaded as a top-level module


def test_entry_points_run_from_their_folder_and_as_modules():
    """`cd jetson && python3 infer_trt.py` (the operator's way, Python 3.6) and `python -m jetson.infer_trt`."""
    for cmd, cwd in (([sys.executable, "infer_trt.py", "--help"], JETSON),
                     ([sys.executable, "build_engine.py", "--help"], JETSON),
                     ([sys.executable, "-m", "jetson.infer_trt", "--help"], REPO)):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
        assert proc.returncode == 0 and "usage:" in proc.stdout, (cmd, proc.stderr)


@pytest.mark.parametrize("gpu, requested, expected", [
    (("nano", True, False, 8), "auto", "fp16"),
    (("orin", True, True, 8), "auto", "int8"),
    (("orin-trt10", True, True, 10), "auto", "int8"),
    (("old", False, False, 8), "auto", "fp32"),
    (("trt11-no-int8", True, False, 11), "auto", "fp32"),
    (("orin", True, True, 8), "fp32", "fp32"),
])
def test_precision_choice(gpu, requested, expected):
    _, fp16, int8, major = gpu
    precision, onnx = common.choose_precision(requested, fp16, int8, major, "q.onnx", "f.onnx")
    assert precision == expected and onnx == ("q.onnx" if expected == "int8" else "f.onnx")


@pytest.mark.parametrize("args, message", [
    ((("int8", True, False, 8, "q.onnx", "f.onnx")), "no fast INT8"),
    ((("fp16", True, True, 11, "q.onnx", "f.onnx")), "strongly typed"),
    ((("fp16", False, False, 8, "q.onnx", "f.onnx")), "no fast FP16"),
    ((("int8", True, True, 10, None, "f.onnx")), "needs the QDQ ONNX"),
])
def test_impossible_precision_says_why(args, message):
    with pytest.raises(common.DeviceError, match=message):
        common.choose_precision(*args)


def test_engine_from_another_version_or_gpu_is_refused():
    meta = {"tensorrt": "8.2.1.8", "gpu": "NVIDIA Tegra X1"}
    common.check_engine_meta(meta, "8.2.1.8", "NVIDIA Tegra X1", "e.engine")
    with pytest.raises(common.DeviceError, match="built with TensorRT 8.2.1.8, this is TensorRT 10.3"):
        common.check_engine_meta(meta, "10.3.0", "NVIDIA Tegra X1", "e.engine")
    with pytest.raises(common.DeviceError, match="built for GPU"):
        common.check_engine_meta(meta, "8.2.1.8", "Orin", "e.engine")


def test_folder_inference_with_onnxruntime(quantized):
    run = infer("--backend", "onnxruntime", "--onnx", quantized / "model_save" / "ecg_model_float.onnx",
                "--images", quantized / "data" / "test_images", "--repeats", "20", "--batch", "16")
    assert run.returncode == 0, run.stderr
    acc = float(run.stdout.split("accuracy ")[1].split()[0])
    assert acc > 0.7
    assert "p99" in run.stdout and "images/s" in run.stdout


def test_record_inference_matches_stage1_pixels(quantized, mitdb, tmp_path):
    """Device preprocessing of record 119 with its annotated beats (--beats annotations, stage 1's
    normalisation) gives the stage-1 images of its beats, pixel for pixel."""
    from jetson import scalograms, signal_input, streaming
    from jetson.rr_features import beat_peaks

    op = scalograms.load_operator(str(quantized / "model_save" / "cwt_operator.npz"))
    sig = signal_input.read_wfdb(str(mitdb / "119"))
    samples, symbols = beat_peaks(sig.ann_samples, sig.ann_symbols)
    seen = []

    def keep_images(u8, rr):
        seen.extend(u8)
        return np.zeros(len(u8), np.int64), np.ones(len(u8))

    engine = streaming.BeatEngine(op, 360.0, keep_images, "record", samples,
                                  ~np.isin(symbols, list(op["invalid_symbols"])))
    beats = [b for b in engine.push(sig.x, final=True) if b[3] is not None]
    by_sample = dict(zip([b[2] for b in beats], seen))
    with open(quantized / "full" / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["record"] == "119"]
    assert len(rows) > 400
    same = sum(np.array_equal(by_sample[int(r["sample"])], cv2.imread(str(quantized / "full" / r["path"]), 0))
               for r in rows)
    assert same == len(rows)
    out = tmp_path / "beats.csv"
    run = infer("--backend", "onnxruntime", "--onnx", quantized / "model_save" / "ecg_model_quantized.onnx",
                "--record", mitdb / "119", "--beats", "annotations", "--operator",
                quantized / "model_save" / "cwt_operator.npz", "--out", out)
    assert run.returncode == 0, run.stderr
    labels = list(csv.DictReader(open(out)))
    assert len(labels) == len(beats) and "real time" in run.stdout
    v = [r for r in labels if r["annotation"] == "V"]
    assert sum(r["predicted"] == "PVC" for r in v) / len(v) > 0.7  # PVCs recognised as class 3 (PVC)


@pytest.mark.parametrize("case", ["missing", "corrupt", "size", "rate"])
def test_infer_bad_input(quantized, tmp_path, case):
    onnx_path = quantized / "model_save" / "ecg_model_float.onnx"
    args = ["--backend", "onnxruntime", "--onnx", onnx_path, "--images", quantized / "data" / "test_images"]
    if case == "missing":
        args[3], needle = tmp_path / "nope.onnx", "ONNX file not found"
    elif case == "corrupt":
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"not an onnx file")
        args[3], needle = bad, "not a loadable ONNX model"
    elif case == "size":
        (tmp_path / "imgs" / "0").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "imgs" / "0" / "a.png"), np.zeros((64, 64), np.uint8))
        args[5], needle = tmp_path / "imgs", "a.png: image is 64x64, the model takes 100x100"
    else:
        import wfdb

        sig = np.sin(np.arange(50 * 20) / 20.0)[:, None]
        wfdb.wrsamp("r50", fs=50, units=["mV"], sig_name=["MLII"], p_signal=sig, fmt=["16"], write_dir=str(tmp_path))
        args[4:6] = ["--record", tmp_path / "r50", "--operator", quantized / "model_save" / "cwt_operator.npz"]
        needle = "sampling rate 50 Hz is below 100 Hz"
    run = infer(*args)
    assert run.returncode == 2 and needle in run.stderr, run.stderr


@pytest.fixture(scope="session")
def tensorrt():
    """TensorRT and pycuda, or a skip before the slow fixtures are built (session scope: set up
    before `quantized`, which comes after it in the argument list)."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here (GPU machines only)")
    pytest.importorskip("pycuda", reason="pycuda is needed for TensorRT device memory")


@pytest.mark.parametrize("precision, onnx_file", [("fp16", "ecg_model_float.onnx"),
                                                   ("int8", "ecg_model_quantized.onnx")])
def test_tensorrt_engine_agrees_with_onnxruntime(tensorrt, quantized, tmp_path, precision, onnx_file):
    """Both engines the device may use: FP16 from the float ONNX, INT8 from the Q/DQ ONNX (where
    the GPU has INT8), each against ONNX Runtime on the same file (>= 99.5 % argmax agreement on
    the test images), with the engine's latency reported."""
    engine = tmp_path / f"{precision}.engine"
    build = subprocess.run([sys.executable, str(JETSON / "build_engine.py"), "--onnx-dir",
                            str(quantized / "model_save"), "--precision", precision, "--out", str(engine),
                            "--timing-cache", str(tmp_path / "t.cache")], capture_output=True, text=True, cwd=JETSON)
    for impossible in ("no fast INT8", "no FP16 flag", "no fast FP16"):  # this GPU / TensorRT cannot build it
        if impossible in build.stderr:
            pytest.skip(build.stderr.strip().splitlines()[-1])
    assert build.returncode == 0, build.stderr
    from jetson import image_folder, runners
    trt_run = runners.TrtRunner(str(engine))
    meta = common.read_json(str(engine) + ".json")
    assert meta["precision"] == precision and meta["onnx"].endswith(onnx_file)
    ort_run = runners.OrtRunner(meta["onnx"])
    u8, _ = image_folder.load_folder(str(quantized / "data" / "test_images"), trt_run.shape)
    x = runners.to_input(u8)
    agree = (trt_run(x).argmax(1) == ort_run(x).argmax(1)).mean()
    (p50, p90, p99), ips = image_folder.timing(trt_run, x, 64, 100)
    print(f"TensorRT {precision} ({onnx_file}): agreement with ONNX Runtime {agree * 100:.2f} % on {len(x)} images; "
          f"batch-1 latency p50 {p50:.2f} ms, p99 {p99:.2f} ms; batch 64: {ips:.0f} images/s")
    assert agree >= 0.995
