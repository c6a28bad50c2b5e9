"""Unit tests of the stage-1 building blocks against the plain definitions they replace."""

import cv2
import numpy as np
import pywt
import pytest
from PIL import Image
from scipy.ndimage import median_filter
from scipy.signal import medfilt

from ecg import beats as B
from ecg import config
from ecg import scalogram

SC = scalogram.scales()


def spec_image(beat):
    """The thesis method (docs/design.md, stage 1, step 7) for one beat."""
    coef, _ = pywt.cwt(beat, SC, "mexh")
    s = np.abs(coef)
    s -= s.min()
    s /= s.max() + 1e-6
    s *= 255
    return cv2.resize(s.astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def ecg_like():
    rng = np.random.default_rng(1)
    t = np.arange(200)
    spikes = np.exp(-0.5 * ((t[None, :] - 90 - rng.integers(-3, 4, (64, 1))) / 4.0) ** 2)
    return spikes * rng.uniform(0.5, 2, (64, 1)) + 0.05 * rng.standard_normal((64, 200)).cumsum(1)


def test_filter_windows_are_the_thesis_ones():
    pp = config.default("preprocess")
    assert [B.window(w, pp["fs"]) for w in pp["baseline_windows_s"]] == [71, 215]
    assert int(pp["align_halfwidth_s"] * pp["fs"]) == 18  # as preprocess computes the search half-width
    assert pp["before"] + pp["after"] == 200 and pp["freq_max"] - pp["freq_min"] + 1 == 100


def test_filter_windows_stay_odd_at_other_rates():
    assert B.window(0.2, 250) == 49 and B.window(0.6, 250) == 149  # int(w*fs) - 1, already odd
    assert B.window(0.2, 255) == 51  # int(51.0) - 1 = 50 is even: medfilt needs odd, so 51


def test_baseline_removal_is_cascaded_zero_padded_medfilt():
    x = np.random.default_rng(0).standard_normal(5000).cumsum()
    expected = x - medfilt(medfilt(x, 71), 215)
    assert np.array_equal(B.remove_baseline(x, 360), expected)
    alt = median_filter(median_filter(x, 71, mode="constant"), 215, mode="constant")
    assert np.array_equal(expected, x - alt)


def test_align_moves_to_local_maximum_and_clips_at_edges():
    f = np.zeros(100)
    f[[3, 50, 97]] = [1.0, 2.0, 3.0]
    aligned = B.align_peaks(f, np.array([0, 45, 99]), 18)
    assert aligned.tolist() == [3, 50, 97]
    f2 = np.zeros(100)
    f2[63] = 1  # just outside [45-18, 45+18): not reachable
    assert B.align_peaks(f2, np.array([45]), 18).tolist() == [27]  # argmax of zeros = left edge


def test_drop_invalid_and_select_beats_follow_class_order_and_edges():
    samples = np.array([10, 100, 200, 300, 999])
    symbols = np.array(["N", "V", "~", "N", "N"])
    s, sym = B.drop_invalid(samples, symbols, ["~"])
    assert s.tolist() == [10, 100, 300, 999] and sym.tolist() == ["N", "V", "N", "N"]
    classes = [{"name": "0", "symbols": ["N"], "records": ["r"]},
               {"name": "3", "symbols": ["V"], "records": "all"},
               {"name": "9", "symbols": ["N"], "records": ["other"]}]
    got = B.select_beats("r", s, sym, 1000, classes, 90, 110)
    # 10 - 90 < 0 is skipped; 999 + 110 >= 1000 is skipped; class 0 first, then class 3
    assert got == [("0", 300, "N"), ("3", 100, "V")]
    assert B.select_beats("r", np.array([890]), np.array(["N"]), 1000, classes[:1], 90, 110) == []
    assert len(B.select_beats("r", np.array([889]), np.array(["N"]), 1000, classes[:1], 90, 110)) == 1


def test_cut_windows():
    x = np.arange(1000.0)
    w = B.cut(x, [100, 500], 90, 110)
    assert w.shape == (2, 200) and w[0, 0] == 10 and w[1, 90] == 500 and w[1, -1] == 609


def test_cwt_operator_is_bit_identical_to_pywt_on_unit_vectors():
    for n, sc in ((200, tuple(SC)), (57, tuple(SC[::7]))):
        assert np.array_equal(scalogram.cwt_operator(n, sc), scalogram.cwt_operator_reference(n, sc))


def test_device_operator_file_is_compact_and_rebuilds_the_operator_exactly(tmp_path):
    """cwt_operator.npz stores one kernel per scale; the device's rebuilt matrix is the operator
    bit for bit (and the file is ~0.3 MB, not the 32 MB matrix)."""
    from jetson import scalograms

    made = {"cwt_context": "beat", "fs": 360, "freq_min": 1, "freq_max": 100, "wavelet": "mexh", "lead": 0,
            "before": 90, "after": 110, "image_size": 100, "baseline_windows_s": [0.2, 0.6],
            "align_halfwidth_s": 0.05, "invalid_symbols": ["|"]}
    path = tmp_path / "cwt_operator.npz"
    scalogram.write_device_operator(path, made, ["N", "S"])
    op = scalograms.load_operator(str(path))
    assert np.array_equal(op["operator"], scalogram.cwt_operator(200, tuple(SC)))
    assert path.stat().st_size < 400_000
    for n, sc in ((57, tuple(SC[::7])), (200, tuple(SC[:5]))):
        full = scalogram.cwt_operator(n, sc)
        assert np.array_equal(scalograms.operator_matrix(scalogram.operator_kernels(full, n)), full)


def test_cwt_operator_matches_pywt(ecg_like):
    ref = np.stack([pywt.cwt(b, SC, "mexh")[0] for b in ecg_like])
    ours = scalogram.cwt(ecg_like, SC)
    assert ours.shape == ref.shape == (64, 100, 200)
    assert np.max(np.abs(ours - ref)) < 1e-10 * np.max(np.abs(ref))


def test_fast_images_equal_spec_images(ecg_like):
    expected = np.stack([spec_image(b) for b in ecg_like])
    fast = scalogram.BeatImages(200, tuple(SC))
    assert np.array_equal(fast(ecg_like), expected)
    assert np.array_equal(fast(ecg_like[:5]), expected[:5])  # another batch size, reused buffers
    assert np.array_equal(fast(ecg_like), expected)
    assert np.array_equal(scalogram.to_images(scalogram.cwt(ecg_like, SC).copy()), expected)


def test_batched_resize_equals_single_resize():
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, (7, 100, 200), dtype=np.uint8)
    single = np.stack([cv2.resize(i, (100, 100), interpolation=cv2.INTER_CUBIC) for i in imgs])
    assert np.array_equal(scalogram._resize_stack(imgs, 100), single)


@pytest.mark.parametrize("level", [0, 1, 9])
def test_png_round_trip_with_cv2_and_pil(tmp_path, level):
    img = np.random.default_rng(4).integers(0, 256, (100, 100), dtype=np.uint8)
    img[:50] = 7  # some structure for the filter
    data = scalogram.encode_png(img, level)
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), img)
    (tmp_path / "a.png").write_bytes(data)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), img)
    assert Image.open(tmp_path / "a.png").mode == "L"


def test_cwt_in_context_equals_whole_signal_cwt():
    rng = np.random.default_rng(5)
    signal = rng.standard_normal(6000).cumsum()
    peaks = [95, 1500, 3000, 5880]  # near both edges too
    full = pywt.cwt(signal, SC, "mexh")[0]
    ours = scalogram.cwt_in_context(signal, peaks, 90, 110, SC)
    for b, r in enumerate(peaks):
        np.testing.assert_allclose(ours[b], full[:, r - 90:r + 110], rtol=0, atol=1e-9)
