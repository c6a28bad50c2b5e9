"""The shipped models (models/<name>/, written by `make release`): checksums, loading with
weights_only, and the device's recorded predictions recomputed on real records, so a stale or
corrupt model cannot pass."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ecg import model as model_io
from ecg import release

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SHIPPED = sorted(p for p in MODELS.iterdir() if (p / "SHA256SUMS").is_file() and not p.name.startswith(".")) \
    if MODELS.is_dir() else []
FILES = {"ecg_model_float.onnx", "ecg_model_quantized.onnx", "cwt_operator.npz", "ecg_model_compact.pth",
         "release.json", "reference_predictions.csv"}
ids = [p.name for p in SHIPPED]


def test_both_models_are_shipped_and_small():
    assert {"aami", "thesis"} <= set(ids)   # the new-patient model and the faithful thesis model
    total = sum(f.stat().st_size for d in SHIPPED for f in d.iterdir())
    assert total < 30e6, total


@pytest.mark.parametrize("folder", SHIPPED, ids=ids)
def test_checksums_cover_every_file_and_match(folder):
    sums = release.read_sums(folder)
    assert set(sums) == FILES == {p.name for p in folder.iterdir()} - {"SHA256SUMS"}
    for name, digest in sums.items():
        assert release.sha256(folder / name) == digest, f"{folder / name}: checksum differs (corrupt or stale)"


@pytest.mark.parametrize("folder", SHIPPED, ids=ids)
def test_files_load_and_describe_the_same_model(folder):
    import onnx

    net, meta = model_io.load(folder / "ecg_model_compact.pth")    # weights_only=True inside
    for name in ("ecg_model_float.onnx", "ecg_model_quantized.onnx"):
        props = {p.key: p.value for p in onnx.load(str(folder / name)).metadata_props}
        assert json.loads(props["classes"]) == list(meta["classes"])
        if meta.get("rr_features"):
            assert json.loads(props["rr_features"])["names"] == list(meta["rr_features"])
    card = json.loads((folder / "release.json").read_text())
    assert card["name"] == folder.name
    # the card's figures agree with its own confusion matrices (a hand-edited or mixed card fails)
    for key in ("test_float", "test_pruned", "test_qat"):
        r = card["results"][key]
        cm = np.array(r["confusion_matrix"])
        assert r["classes"] == list(meta["classes"]) and cm.sum() == r["test_images"] > 1000, key
        assert r["accuracy"] == pytest.approx(np.trace(cm) / cm.sum(), abs=1e-9), key


@pytest.mark.parametrize("folder", SHIPPED, ids=ids)
def test_device_reproduces_the_recorded_predictions(folder, mitdb):
    """jetson/infer_trt.py (ONNX Runtime, detected beats), float and Q/DQ model: the same beats as
    recorded at release time and the same labels (ONNX Runtime's kernels differ between CPUs in
    the last bits, and its int8 kernels more: a near-tie may flip, so 99.5 % / 99 %), the float
    model's confidences to 1e-3. A stale model (another epoch, another run) differs far more."""
    want = release.read_predictions(folder / release.PREDICTIONS)
    card = json.loads((folder / "release.json").read_text())["reference_predictions"]
    got = release.device_predictions(folder, [mitdb / r for r in card["records"]], card["seconds"])
    assert len(want) > 100 and [w[:3] for w in want] == [g[:3] for g in got]
    for variant, need in (("float", 0.995), ("qdq", 0.99)):
        pairs = [(w, g) for w, g in zip(want, got) if w[1] == variant]
        assert sum(w[3] == g[3] for w, g in pairs) >= need * len(pairs), variant
    assert max(abs(w[4] - g[4]) for w, g in zip(want, got) if w[1] == "float" and w[3] == g[3]) <= 1e-3


@pytest.mark.parametrize("folder", SHIPPED, ids=ids)
def test_compact_pth_agrees_with_its_float_onnx(folder, mitdb):
    """The weights-only .pth (PyTorch) and the float ONNX (BN folded, CLE) label the device's beats
    of record 119's first two minutes alike."""
    import torch
    from jetson import labeller, runners
    from jetson import scalograms
    from jetson import streaming
    from jetson.signal_input import read_wfdb

    sig = read_wfdb(str(mitdb / "119"))
    run = runners.OrtRunner(str(folder / "ecg_model_float.onnx"))
    seen = []

    def classify(u8, rr):
        seen.append((runners.to_input(u8), None if rr is None else np.asarray(rr, np.float32)))
        logits = run(seen[-1][0], seen[-1][1])
        return logits.argmax(1), logits.max(1)

    engine = streaming.BeatEngine(scalograms.load_operator(str(folder / "cwt_operator.npz")), sig.fs, classify,
                                  **labeller.engine_options(run))
    engine.push(sig.x[:int(120 * sig.fs)], final=True)
    x = np.concatenate([s[0] for s in seen])
    net, meta = model_io.load(folder / "ecg_model_compact.pth")
    rr = np.concatenate([s[1] for s in seen]) if meta.get("rr_features") else None   # the engine always makes them
    with torch.no_grad():
        args = (torch.from_numpy(x),) + (() if rr is None else (torch.from_numpy(rr),))
        ours = net.eval()(*args).numpy()
    onnx_logits = run(x, rr)
    assert len(x) > 100
    assert (ours.argmax(1) == onnx_logits.argmax(1)).mean() >= 0.99


def test_release_refuses_a_folder_that_is_not_a_release(tmp_path, monkeypatch):
    """`--name jetson --out .` must not replace the jetson/ folder."""
    from ecg.errors import UserError

    (tmp_path / "jetson").mkdir()
    (tmp_path / "jetson" / "infer_trt.py").write_text("x")
    with pytest.raises(UserError, match="is not a model release"):
        release.check_destination(tmp_path / "jetson")
    assert (tmp_path / "jetson" / "infer_trt.py").is_file()


def test_release_refuses_an_unfinished_run(tmp_path, capsys):
    (tmp_path / "run" / "model_save").mkdir(parents=True)
    (tmp_path / "run" / "model_save" / "ecg_model_float.onnx").write_bytes(b"x")
    with pytest.raises(SystemExit) as e:
        release.main(["--workdir", str(tmp_path / "run"), "--out", str(tmp_path / "models")])
    assert e.value.code == 2 and not (tmp_path / "models").exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ecg_model_quantized.onnx: missing; run the pipeline through stage 7" in err


@pytest.mark.parametrize("folder", SHIPPED, ids=ids)
def test_device_reads_the_metadata_without_the_onnx_package(folder):
    """An operator's machine (JetPack, or pip install onnxruntime) has no `onnx` package: the
    device's own protobuf walk must give the same class names and RR features, or labels and
    scoring would fall back to bare indices."""
    import onnx
    from jetson import common

    for name in ("ecg_model_float.onnx", "ecg_model_quantized.onnx"):
        want = {p.key: p.value for p in onnx.load(str(folder / name)).metadata_props}
        assert common.read_onnx_metadata(str(folder / name)) == want and "classes" in want


@pytest.mark.parametrize("case", ["out_is_a_folder", "out_folder_missing", "truncated_operator", "truncated_onnx"])
def test_bad_output_paths_and_a_truncated_operator_give_one_error_line(tmp_path, case):
    """The device with the shipped model: --out naming a folder, --out in a folder that does not
    exist, a truncated cwt_operator.npz and a truncated ONNX file each end with one error line
    naming the path and exit status 2, before any work (issue 23's bad paths)."""
    import subprocess

    folder = ROOT / "models" / "aami"
    t = np.arange(3600) / 360.0
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("ecg\n" + "\n".join("{:.4f}".format(v) for v in np.sin(2 * np.pi * 1.2 * t) ** 15) + "\n")
    operator, out, onnx_file = folder / "cwt_operator.npz", tmp_path / "beats.csv", folder / "ecg_model_float.onnx"
    if case == "truncated_onnx":
        onnx_file = tmp_path / "cut.onnx"
        onnx_file.write_bytes((folder / "ecg_model_float.onnx").read_bytes()[:40000])
        needle = f"{onnx_file}: not a"
    elif case == "out_is_a_folder":
        out, needle = tmp_path, f"{tmp_path}: is a folder"
    elif case == "out_folder_missing":
        out, needle = tmp_path / "nope" / "beats.csv", f"{tmp_path / 'nope'}: the folder for --out does not exist"
    else:
        operator = tmp_path / "cut.npz"
        operator.write_bytes((folder / "cwt_operator.npz").read_bytes()[:50000])
        needle = f"{operator}: not a readable CWT operator file"
    proc = subprocess.run([sys.executable, str(ROOT / "jetson" / "infer_trt.py"), "--backend", "onnxruntime",
                           "--onnx", str(onnx_file), "--operator", str(operator),
                           "--csv", str(csv_in), "--fs", "360", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT / "jetson")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: " + needle), proc.stderr
    assert not (tmp_path / "beats.csv").exists()


def test_a_corrupt_tensorrt_engine_gives_one_error_line(tmp_path, monkeypatch, capsys):
    """A TensorRT engine that TensorRT cannot deserialize (truncated, or built for another version)
    ends with one error line naming it and exit status 2. TensorRT is not installed here: a stand-in
    module answers as TensorRT does for such a file (deserialize_cuda_engine returns None)."""
    import types

    from jetson import infer_trt

    trt = types.SimpleNamespace(__version__="10.3.0", Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda s, l: None}),
                                Runtime=lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda b: None))
    driver = types.SimpleNamespace(Device=lambda i: types.SimpleNamespace(name=lambda: "Test GPU"))
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = driver
    for name, mod in (("tensorrt", trt), ("pycuda", pycuda), ("pycuda.autoinit", types.ModuleType("pycuda.autoinit")),
                      ("pycuda.driver", driver)):
        monkeypatch.setitem(sys.modules, name, mod)
    engine = tmp_path / "ecg_fp16.engine"
    engine.write_bytes(b"\x00" * 100)
    (tmp_path / "ecg_fp16.engine.json").write_text(json.dumps({"tensorrt": "10.3.0", "gpu": "Test GPU"}))
    with pytest.raises(SystemExit) as e:
        infer_trt.main(["--engine", str(engine), "--images", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {engine}: TensorRT could not load this engine")
