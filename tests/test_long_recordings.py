"""Long recordings on the device: batch mode works through the signal in blocks (bounded memory)
and labels every beat as the whole signal at once does; a stream's small pushes take the CWT by
FFT, equal to the operator product; the detector's settings are the operator's to change.
Speed and memory of a day-long recording: bench/long_recording.py."""
import numpy as np
import pytest

from jetson import qrs, scalograms
from test_jetson import infer

SHIPPED = "../models/aami/"


def test_the_fft_cwt_equals_the_operator_product():
    op = scalograms.load_operator(SHIPPED.replace("../", "") + "cwt_operator.npz")
    w = np.random.default_rng(1).normal(size=(5, int(op["before"]) + int(op["after"])))
    want = (w @ op["operator"]).reshape(5, -1, w.shape[1])
    got = scalograms.cwt_by_fft(w, op)
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-12 * np.abs(want).max()
    # the images of a few windows (the FFT path) are those of the same windows among many (the product)
    many = np.concatenate([w, w, w, w])
    assert len(w) < scalograms.SMALL <= len(many)
    assert np.array_equal(scalograms.images(w, op), scalograms.images(many, op)[:len(w)])


@pytest.mark.parametrize("block_s", ["60", "7.5"])
def test_batch_in_blocks_labels_as_the_whole_signal(mitdb, tmp_path, block_s):
    """Record 208 (PVCs, couplets, fusion beats) in blocks of 60 s and of 7.5 s (shorter than the
    baseline and detector context): the same CSV, byte for byte, as the whole signal at once."""
    common = ("--backend", "onnxruntime", "--onnx", SHIPPED + "ecg_model_float.onnx", "--operator",
              SHIPPED + "cwt_operator.npz", "--record", mitdb / "208")
    whole, blocks = tmp_path / "whole.csv", tmp_path / "blocks.csv"
    r = infer(*common, "--block-s", "0", "--out", whole)
    assert r.returncode == 0, r.stderr
    r = infer(*common, "--block-s", block_s, "--out", blocks)
    assert r.returncode == 0, r.stderr
    assert len(whole.read_text().splitlines()) > 2900 and blocks.read_text() == whole.read_text()


def test_detector_settings_change_detection_and_bad_ones_are_refused(mitdb, tmp_path):
    import wfdb

    x = wfdb.rdrecord(str(mitdb / "208"), channels=[0], sampto=360 * 120).p_signal[:, 0]
    default = qrs.detect(x, 360.0)
    assert len(default) == len(qrs.detect(x, 360.0, qrs.Settings()))
    # a high threshold without the search-back keeps only the tallest QRS (record 208's PVCs)
    strict = qrs.detect(x, 360.0, qrs.Settings(threshold=0.9, searchback_rr=100))
    assert 0 < len(strict) < len(default) / 2 and set(strict.tolist()) <= set(default.tolist())
    with pytest.raises(ValueError):
        qrs.Settings(threshold=0)
    for flag, value in (("--qrs-threshold", "1.5"), ("--qrs-searchback", "0.5"), ("--qrs-t-wave-s", "0.1")):
        r = infer("--backend", "onnxruntime", "--onnx", SHIPPED + "ecg_model_float.onnx", "--operator",
                  SHIPPED + "cwt_operator.npz", "--record", mitdb / "208", "--out", tmp_path / "x.csv", flag, value)
        assert r.returncode == 2 and r.stderr.startswith("error: --qrs-*: ") and len(r.stderr.splitlines()) == 1
        assert not (tmp_path / "x.csv").exists()
