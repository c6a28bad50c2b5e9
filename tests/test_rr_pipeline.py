"""Stages 5-7 and the device with the two-input model (scalogram + RR-interval features, issue 13):
pruning keeps the fusion head whole, QAT and the ONNX exports take (image, rr), the ONNX files
agree with PyTorch, the device computes the RR features stage 1 wrote, and stage 6 refuses torchrun.

The pipeline runs once per module on a small real subset (records 105 109 118 119, 40 beats per
class, one epoch per stage): the figures test the plumbing, not accuracy."""
import csv
import json
import os

import numpy as np
import pytest
import torch

from conftest import MITDB, REPO, run_main, run_script
from helpers import subset_with_manifest
from ecg import model, onnx_check, pruning
from jetson import morphology
from jetson import rr_features as rr

FEATURES = list(rr.FEATURES)
PER_CLASS = 40
RR_ON = ("--set", "preprocess.rr_features=true", "--set", "model.rr_features=true")
FLOAT, QDQ, FP16 = "ecg_model_float.onnx", "ecg_model_quantized.onnx", "ecg_model_fp16.onnx"


def rr_net(seed=0):
    torch.manual_seed(seed)
    net = model.build_model(4, rr_features=FEATURES).eval()
    net.rr_mean.copy_(torch.linspace(0.6, 1.0, 7)), net.rr_std.copy_(torch.linspace(0.1, 0.3, 7))
    return net


def inputs(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 100, 100, generator=g), 0.5 + torch.rand(n, 7, generator=g)


# ---- unit tier: pruning the fused model ---------------------------------------------------------

def test_pruning_an_rr_model_prunes_the_image_path_only_and_reloads_exactly(tmp_path):
    net = rr_net()
    meta = {"input_size": [1, 100, 100], "rr_features": FEATURES}
    rr_layer, head = net.rr_layer[0].weight.clone(), net.classifier[1].weight.clone()
    before = pruning.size_figures(net, model.example_inputs(meta))
    pruning.prune(net, 0.5, round_to=8, inputs=model.example_inputs(meta))
    after = pruning.size_figures(net, model.example_inputs(meta))
    assert after["macs"] < 0.3 * before["macs"]
    width = net.features[-1][0].out_channels
    assert width < 1280 and net.classifier[1].in_features == width + model.RR_HIDDEN
    assert torch.equal(net.rr_layer[0].weight, rr_layer)  # the RR layer is whole
    assert torch.equal(net.classifier[1].weight[:, width:], head[:, 1280:])  # and the head's RR columns
    assert net.classifier[1].out_features == 4
    model.save(tmp_path / "c.pth", net.state_dict(), list("0123"), shapes=model.layer_shapes(net),
               rr_features=FEATURES)
    again, m = model.load(tmp_path / "c.pth")
    assert m["rr_features"] == FEATURES and m["rr_mean"] == pytest.approx(net.rr_mean.tolist())
    x, r = inputs()
    with torch.no_grad():
        assert torch.equal(net(x, r), again.eval()(x, r))


def test_stage6_refuses_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    proc = run_main("6_AIMET_quantization.py", "--workdir", tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: 6_AIMET_quantization.py does not run under "
                                                           "torchrun")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_onnx_checks_refuse_rr_inputs_without_metadata_or_of_the_wrong_width(tmp_path):
    from ecg import onnx_export
    from ecg.errors import UserError

    net = rr_net()
    meta = {"input_size": [1, 100, 100], "rr_features": FEATURES, "rr_mean": [0.0] * 7, "rr_std": [1.0] * 7}
    ex = model.example_inputs(meta)
    onnx_export.export_float(net, tmp_path / "ok.onnx", list("0123"), ex, onnx_export.rr_metadata(meta))
    m = onnx_check.load_checked(tmp_path / "ok.onnx")
    assert [i.name for i in m.graph.input] == ["image", "rr"]
    assert onnx_check.rr_metadata(m) == {"names": FEATURES, "mean": [0.0] * 7, "std": [1.0] * 7}
    with pytest.raises(UserError, match="these images do not have"):
        onnx_check.feeds(m, np.zeros((1, 1, 100, 100), np.float32))
    onnx_export.export_float(net, tmp_path / "nometa.onnx", list("0123"), ex)
    with pytest.raises(UserError, match="no 'rr_features' metadata"):
        onnx_check.load_checked(tmp_path / "nometa.onnx")
    short = dict(onnx_export.rr_metadata(meta), names=FEATURES[:5])
    onnx_export.export_float(net, tmp_path / "short.onnx", list("0123"), ex, short)
    with pytest.raises(UserError, match=r"expected \[batch, 5\]"):
        onnx_check.load_checked(tmp_path / "short.onnx")


# ---- data / slow tiers: the pipeline on a real subset -------------------------------------------

@pytest.fixture(scope="module")
def stage1_rr(mitdb, tmp_path_factory):
    """Stage 1 with RR features on four records (thesis classes), and a subset of PER_CLASS beats
    per class with the matching rows of the manifest (stage 2 carries them into the splits)."""
    work = tmp_path_factory.mktemp("rr")
    full = work / "full"
    run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", "105", "109", "118", "119", "--out", full,
               "--set", "preprocess.rr_features=true", "--set", "preprocess.morph_features=true")
    subset_with_manifest(full, work / "data" / "scalogram", PER_CLASS)
    return work


@pytest.fixture(scope="module")
def rr_run(stage1_rr, request):
    if "not slow" in (request.config.option.markexpr or ""):
        pytest.skip("needs the training stages: the slow tier, which this run leaves out")
    w = ("--workdir", stage1_rr, *RR_ON)
    run_script("2_train_test_valid_split.py", *w)
    run_script("3_training.py", *w, "--epochs", "1", "--batch-size", "16")
    run_script("5_magnitude_channel_pruning.py", *w, "--epochs", "1", "--batch-size", "16")
    run_script("6_AIMET_quantization.py", *w, "--epochs", "1", "--calibration-images", "64", "--batch-size", "16")
    run_script("7_AIMET_onnx.py", *w, "--no-timing")
    return stage1_rr


def test_stage5_prunes_the_rr_model_and_keeps_its_features(rr_run):
    trained, tmeta = model.load(rr_run / "model_save" / "ecg_model.pth")
    net, meta = model.load(rr_run / "model_save" / "ecg_model_compact.pth")
    assert meta["rr_features"] == FEATURES and meta["rr_mean"] == tmeta["rr_mean"] and meta["rr_std"] == tmeta["rr_std"]
    assert torch.equal(net.rr_mean, trained.rr_mean) and torch.equal(net.rr_std, trained.rr_std)
    width = net.features[-1][0].out_channels
    assert width <= 640 and net.classifier[1].in_features == width + model.RR_HIDDEN
    s = json.loads((rr_run / "reports" / "prune_summary.json").read_text())
    assert s["after"]["macs"] < 0.3 * s["before"]["macs"] and len(s["fine_tuning"]) == 1
    assert (rr_run / "reports" / "test_result_pruned.json").is_file()


def test_exports_take_image_and_rr_with_names_and_normalisation(rr_run):
    _, meta = model.load(rr_run / "model_save" / "ecg_model_compact.pth")
    for f in (FLOAT, QDQ, FP16, "ecg_model_qdq_int8_weights.onnx"):
        m = onnx_check.load_checked(rr_run / "model_save" / f)
        dims = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
        assert dims == {"image": ["batch", 1, 100, 100], "rr": ["batch", 7]}, f
        assert onnx_check.rr_metadata(m) == {"names": FEATURES, "mean": meta["rr_mean"], "std": meta["rr_std"]}, f
    qmeta = model.load_file(rr_run / "model_save" / "ecg_model_qat.pth")  # the sim's weights + encodings
    assert qmeta["rr_features"] == FEATURES


def test_qdq_export_quantises_the_rr_path_after_its_standardisation(rr_run):
    """The raw rr input and its standardisation (Sub, Div) are float; the standardised features
    enter a QuantizeLinear before rr_layer's Gemm; every Conv/Gemm has int8 weights."""
    m = onnx_check.load_checked(rr_run / "model_save" / QDQ)
    consumers = lambda name: [n for n in m.graph.node if name in n.input]  # noqa: E731
    first = consumers("rr")
    assert [n.op_type for n in first] == ["Sub"]
    div = consumers(first[0].output[0])
    assert [n.op_type for n in div] == ["Div"]
    assert [n.op_type for n in consumers(div[0].output[0])] == ["QuantizeLinear"]
    s = onnx_check.check_qdq(m, QDQ)
    assert s["quantized_conv_gemm"] == sum(n.op_type in ("Conv", "Gemm") for n in m.graph.node)


def test_two_input_onnx_agrees_with_pytorch(rr_run):
    """Float ONNX against the PyTorch model, Q/DQ ONNX (exact Q/DQ semantics) against the AIMET
    simulation, on the test split's images with their RR features from its manifest."""
    from ecg import dataset

    ref = np.load(rr_run / "model_save" / "stage6_test_logits.npz")
    data = dataset.ScalogramDataset(rr_run / "data" / "test_images", rr_features=FEATURES, progress=False)
    assert [str(p) for p in data.paths] == [str(p) for p in ref["paths"]]
    m = onnx_check.load_checked(rr_run / "model_save" / FLOAT)
    feeds = onnx_check.feeds(m, data.images.unsqueeze(1).float().div(255).numpy(), data.rr.numpy())
    flt = onnx_check.run_all(onnx_check.session(rr_run / "model_save" / FLOAT), feeds)
    np.testing.assert_allclose(flt, ref["float"], rtol=0, atol=1e-3)
    qdq = onnx_check.run_all(onnx_check.session(rr_run / "model_save" / QDQ, optimize=False), feeds)
    assert (qdq.argmax(1) == ref["qat"].argmax(1)).mean() >= 0.99
    # the RR input matters: other RR values give other logits
    other = onnx_check.run_all(onnx_check.session(rr_run / "model_save" / FLOAT), {**feeds, "rr": feeds["rr"] * 2})
    assert not np.allclose(other, flt)


def test_stage7_table_with_two_inputs(rr_run):
    s = json.loads((rr_run / "reports" / "onnx_summary.json").read_text())
    assert s["rr_features"]["names"] == FEATURES
    assert all(r["agreement"] >= 0.995 for r in s["results"] if r["strict"])
    assert {f: s["tensorrt"][f]["tensorrt_8_2"] for f in (FLOAT, QDQ, FP16)} == {FLOAT: "ok", QDQ: "ok", FP16: "ok"}
    assert "inputs: image + rr" in (rr_run / "reports" / "onnx_summary.txt").read_text()


def device(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(REPO / "jetson" / "infer_trt.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO / "jetson")


def test_device_runs_the_two_input_onnx_on_a_record(rr_run, tmp_path):
    ms = rr_run / "model_save"
    out = tmp_path / "beats.csv"
    run = device("--backend", "onnxruntime", "--onnx", ms / QDQ, "--record", MITDB / "119", "--beats", "detect",
                 "--score", "--operator", ms / "cwt_operator.npz", "--out", out)
    assert run.returncode == 0, run.stderr
    assert "real time" in run.stdout and len(out.read_text().splitlines()) > 1500
    score = json.loads((tmp_path / "beats.score.json").read_text())
    assert score["detection"]["se"] > 99
    # images alone cannot feed a two-input model
    run = device("--backend", "onnxruntime", "--onnx", ms / FLOAT, "--images", rr_run / "data" / "test_images")
    assert run.returncode == 2 and run.stderr.startswith("error: the model takes per-beat RR/morphology features")


def test_device_refuses_rr_of_the_wrong_width_or_features(tmp_path):
    from jetson import common, runners

    with pytest.raises(common.DeviceError, match=r"shape \(2, 5\)"):
        runners.rr_or_error(np.zeros((2, 5)), FEATURES)
    with pytest.raises(common.DeviceError, match="this device computes"):
        common.check_rr_features(FEATURES[::-1], 7, "m.onnx")
    with pytest.raises(common.DeviceError, match="this device computes"):
        common.check_rr_features(None, 5, "m.onnx")
    assert common.check_rr_features(FEATURES, 7, "m.onnx") == FEATURES
    both = FEATURES + list(morphology.FEATURES)
    assert common.check_rr_features(both, 14, "m.onnx") == both
    assert common.check_rr_features(None, 14, "m.onnx") == both   # a file without names: by width
    with pytest.raises(common.DeviceError, match="this device computes"):
        common.check_rr_features(list(morphology.FEATURES) + FEATURES, 14, "m.onnx")  # wrong order


@pytest.mark.parametrize("rec", ["119", "109"])
def test_device_rr_features_equal_stage1s_on_a_real_record(stage1_rr, tmp_path, rec):
    """jetson/ with --beats annotations (the .atr's beats, stage 1's normalisation): for every beat
    stage 1 kept from records 119 (PVCs in bigeminy) and 109 (left bundle branch block), the RR and
    morphology features the device feeds the model equal the manifest's."""
    from jetson import runners, scalograms, signal_input, streaming
    from ecg import config, preprocess, scalogram

    cfg = config.load(config.parser("").parse_args(
        ["--workdir", str(stage1_rr), "--set", f'paths.scalogram_dir="{stage1_rr / "full"}"', *RR_ON]))
    scalogram.write_device_operator(tmp_path / "op.npz", preprocess.made_with(cfg), ["0", "1", "2", "3"])
    op = scalograms.load_operator(str(tmp_path / "op.npz"))
    sig = signal_input.read_wfdb(str(MITDB / rec))
    samples, symbols = rr.beat_peaks(sig.ann_samples, sig.ann_symbols)
    fed = []  # the RR features of every beat classified, in order

    def capture(u8, features):
        fed.extend(features)
        return np.zeros(len(u8), np.int64), np.ones(len(u8))

    engine = streaming.BeatEngine(op, sig.fs, capture, "record", samples,
                                  ~np.isin(symbols, [str(s) for s in op["invalid_symbols"]]), morphology=True)
    beats = [b for b in engine.push(sig.x, final=True) if b[3] is not None]
    assert len(beats) == len(fed)
    by_sample = {b[2]: f for b, f in zip(beats, fed)}
    with open(stage1_rr / "full" / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["record"] == rec]
    assert len(rows) > 400  # 119's PVCs (its only class of the thesis map); 109's LBBB beats
    both = FEATURES + list(morphology.FEATURES)
    for r in rows:
        want = np.array([float(r[k]) for k in both])
        got = by_sample[int(r["sample"])]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, err_msg=r["path"])
        # and what the model gets: the same float32 numbers as the training data loader reads
        assert np.array_equal(runners.rr_or_error(got[None], both)[0], want.astype(np.float32)), r["path"]


def test_stage5_under_torchrun_two_processes(rr_run, tmp_path):
    """torchrun (gloo, 2 CPU processes): both prune alike, fine-tune under DDP; rank 0 alone writes
    a compact model that loads and takes (image, rr)."""
    import subprocess
    import sys

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(REPO / "5_magnitude_channel_pruning.py"), "--workdir", str(rr_run), *RR_ON,
                           "--epochs", "1", "--batch-size", "16", "--set", f'paths.model_dir="{out}"',
                           "--set", f'paths.reports_dir="{out}"', "--model",
                           str(rr_run / "model_save" / "ecg_model.pth")],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    net, meta = model.load(out / "ecg_model_compact.pth")
    assert meta["rr_features"] == FEATURES
    s = json.loads((out / "prune_summary.json").read_text())
    assert len(s["fine_tuning"]) == 1 and s["after"]["macs"] < 0.3 * s["before"]["macs"]
    assert proc.stdout.count("epoch 1:") == 1  # printed by rank 0 only
    x, r = inputs(2)
    assert net.eval()(x, r).shape == (2, 4)
