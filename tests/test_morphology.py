"""Patient-relative morphology features (jetson/morphology.py) against their plain definitions:
the running template, each feature, causality, chunked == whole, and the documented fallbacks."""
import numpy as np
import pytest

from jetson import morphology as M

FS, BEFORE, AFTER = 360.0, 90, 110


def beat(width_s=0.08, amp=1.0, shift=0, t_wave=0.3, p_wave=0.15):
    """A synthetic beat window: a Gaussian QRS at R, a P wave before, a T wave after."""
    t = (np.arange(-BEFORE, AFTER) - shift) / FS
    sd = width_s / 4
    return (amp * np.exp(-t ** 2 / (2 * sd ** 2)) + p_wave * np.exp(-(t + 0.17) ** 2 / (2 * 0.02 ** 2))
            + t_wave * np.exp(-(t - 0.22) ** 2 / (2 * 0.04 ** 2)))


def plain_corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def plain_features(w, m):
    """The module docstring's definitions, written out one beat at a time."""
    q = int(round(M.QRS_HALF_S * FS))
    qrs, pre, post = slice(BEFORE - q, BEFORE + q), slice(0, BEFORE - q), slice(BEFORE + q, len(w))

    def width(x):
        d = np.diff(x[qrs]) ** 2
        c = np.cumsum(d) / d.sum()
        return (np.sum(c < 0.9) - np.sum(c < 0.1) + 1) / FS

    amp = lambda x: x[qrs].max() - x[qrs].min()  # noqa: E731
    return [width(w), width(w) / width(m), amp(w) / amp(m), plain_corr(w[qrs], m[qrs]), plain_corr(w[pre], m[pre]),
            plain_corr(w[post], m[post]), np.sqrt(np.mean((w - m) ** 2)) / np.sqrt(np.mean(m ** 2))]


def test_features_against_equal_their_plain_definitions():
    rng = np.random.RandomState(0)
    w = np.stack([beat(0.12, 1.7, 3, -0.2), beat(0.08, 0.5, -2, 0.4), beat() + 0.05 * rng.randn(200)])
    m = np.stack([beat(), beat(0.09, 1.1), beat(0.07, 0.9, 1, 0.25)])
    got = M.features_against(w, m, BEFORE, FS)
    want = np.array([plain_features(a, b) for a, b in zip(w, m)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert got.shape == (3, len(M.FEATURES))


def test_a_wide_tall_inverted_t_beat_stands_out_against_a_normal_template():
    n = beat()
    v = beat(width_s=0.16, amp=2.0, t_wave=-0.4, p_wave=0.0)
    same, pvc = M.features_against(np.stack([n, v]), np.stack([n, n]), BEFORE, FS)
    assert same[1:].tolist() == pytest.approx([1, 1, 1, 1, 1, 0])
    assert pvc[1] > 1.5 and pvc[2] > 1.5 and pvc[5] < 0 and pvc[6] > 0.5
    # ratios and shapes do not depend on the signal's gain (record or running normalisation)
    np.testing.assert_allclose(M.features_against(3 * np.stack([n, v]), 3 * np.stack([n, n]), BEFORE, FS),
                               np.stack([same, pvc]), rtol=1e-12, atol=1e-12)


def test_the_template_is_the_median_of_the_previous_beats():
    rng = np.random.RandomState(1)
    w = np.stack([beat(0.06 + 0.04 * rng.rand(), 0.5 + rng.rand(), rng.randint(-3, 4)) for _ in range(50)])
    k = 8
    got = M.morphology_features(w, BEFORE, FS, template_beats=k)
    for i in (1, 2, 7, 8, 9, 30, 49):
        m = np.median(w[max(i - k, 0):i], axis=0)
        np.testing.assert_allclose(got[i], M.features_against(w[i:i + 1], m[None], BEFORE, FS)[0], rtol=0, atol=0)
    # the first beat is its own template
    assert got[0].tolist() == pytest.approx([got[0][0], 1, 1, 1, 1, 1, 0])


def test_causal_and_chunked_pushes_equal_the_whole_recording():
    rng = np.random.RandomState(2)
    w = np.stack([beat(0.06 + 0.06 * rng.rand(), 0.5 + rng.rand(), rng.randint(-3, 4), rng.rand() - 0.3)
                  for _ in range(100)])
    whole = M.morphology_features(w, BEFORE, FS)
    tracker = M.MorphologyTracker(BEFORE, FS)
    parts, i = [], 0
    for size in [1, 3, 0, 40, 1, 55]:
        parts.append(tracker.push(w[i:i + size]))
        i += size
    assert np.array_equal(np.concatenate(parts), whole)
    assert len(tracker.history) == M.TEMPLATE_BEATS        # bounded memory
    later = w.copy()
    later[60:] *= -1                                       # change the future: the past stays
    assert np.array_equal(M.morphology_features(later, BEFORE, FS)[:60], whole[:60])


def test_a_flat_lead_gives_the_documented_fallback_not_nan():
    flat = np.zeros((5, 200))
    with np.errstate(all="raise"):
        got = M.morphology_features(flat, BEFORE, FS)
        mixed = M.features_against(np.stack([beat()]), flat[:1], BEFORE, FS)
    assert np.isfinite(got).all() and np.isfinite(mixed).all()
    assert got[:, 1:].tolist() == [[1, 1, 0, 0, 0, 0]] * 5   # ratios 1, correlations 0, distance 0
    assert mixed[0, 3] == 0 and mixed[0, 6] == 0           # no template shape: no correlation, no distance


def test_bad_shapes_and_settings_are_refused():
    with pytest.raises(ValueError, match="at least one beat"):
        M.MorphologyTracker(BEFORE, FS, template_beats=0)
    t = M.MorphologyTracker(BEFORE, FS)
    with pytest.raises(ValueError, match="2-D"):
        t.push(np.zeros(200))
    t.push(np.zeros((2, 200)))
    with pytest.raises(ValueError, match="window length"):
        t.push(np.zeros((2, 150)))
    assert t.push(np.zeros((0, 200))).shape == (0, len(M.FEATURES))


# ---- the template channel: stage 1 and the device, pixel for pixel ------------------------------

def test_grey_alpha_png_round_trips_through_the_dataset_reader(tmp_path):
    from ecg import dataset, scalogram

    rng = np.random.RandomState(3)
    pair = rng.randint(0, 256, (100, 100, 2)).astype(np.uint8)
    for level in (0, 1):
        p = tmp_path / f"b{level}.png"
        p.write_bytes(scalogram.encode_png(pair, level))
        got = dataset.read_image(p)
        assert got.shape == (2, 100, 100) and np.array_equal(got, np.moveaxis(pair, -1, 0))
    x = dataset.as_batch(__import__("torch").from_numpy(got[None]))
    assert tuple(x.shape) == (1, 2, 100, 100) and float(x.max()) <= 1.0


def test_two_channel_models_build_save_load_and_export(tmp_path):
    import torch

    from ecg import model, onnx_check, onnx_export

    for arch in model.ARCHS:
        torch.manual_seed(0)
        net = model.build_model(4, arch, rr_features=["a"] * 14, in_channels=2).eval()
        x, r = torch.rand(3, 2, 100, 100), torch.rand(3, 14)
        model.save(tmp_path / "m.pth", net.state_dict(), list("NSVF"), arch=arch, rr_features=["a"] * 14, channels=2)
        again, meta = model.load(tmp_path / "m.pth")
        assert meta["input_size"] == [2, 100, 100] and meta["arch"] == arch
        with torch.no_grad():
            assert torch.equal(net(x, r), again.eval()(x, r))
    ex = model.example_inputs(meta)
    assert tuple(ex[0].shape) == (1, 2, 100, 100)
    onnx_export.export_float(again, tmp_path / "m.onnx", list("NSVF"), ex, onnx_export.rr_metadata(meta))
    onnx_check.load_checked(tmp_path / "m.onnx")   # two channels are a shape of this pipeline


def test_stage1_template_channel_equals_the_devices_on_a_real_record(mitdb, tmp_path):
    """Stage 1 with preprocess.template_channel on record 119: channel 0 is the plain run's image
    byte for byte, and the device (annotated beats, the record's normalisation) makes both
    channels of every beat pixel for pixel."""
    import csv

    from conftest import run_script
    from ecg import config, dataset, preprocess, scalogram
    from jetson import scalograms, signal_input, streaming
    from jetson.rr_features import beat_peaks

    common = ("--data-dir", mitdb, "--records", "119", "--workers", "1")
    run_script("1_preprocessing.py", *common, "--out", tmp_path / "plain")
    run_script("1_preprocessing.py", *common, "--out", tmp_path / "tmpl", "--set", "preprocess.template_channel=true")
    cfg = config.load(config.parser("").parse_args(
        ["--set", f'paths.scalogram_dir="{tmp_path / "tmpl"}"']))
    scalogram.write_device_operator(tmp_path / "op.npz", preprocess.made_with(cfg), ["0", "1", "2", "3"])
    op = scalograms.load_operator(str(tmp_path / "op.npz"))
    sig = signal_input.read_wfdb(str(mitdb / "119"))
    samples, symbols = beat_peaks(sig.ann_samples, sig.ann_symbols)
    seen = []

    def keep(u8, features):
        seen.extend(u8)
        return np.zeros(len(u8), np.int64), np.ones(len(u8))

    engine = streaming.BeatEngine(op, sig.fs, keep, "record", samples,
                                  ~np.isin(symbols, [str(s) for s in op["invalid_symbols"]]), template_channel=True)
    beats = [b for b in engine.push(sig.x, final=True) if b[3] is not None]
    by_sample = dict(zip([b[2] for b in beats], seen))
    with open(tmp_path / "tmpl" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 400
    for r in rows:
        pair = dataset.read_image(tmp_path / "tmpl" / r["path"])
        assert np.array_equal(pair[0], dataset.read_image(tmp_path / "plain" / r["path"])), r["path"]
        assert np.array_equal(by_sample[int(r["sample"])], pair), r["path"]
    # 119's PVCs differ from its (normal) template far more than the template moves from beat to beat
    diff = [np.abs(np.diff(dataset.read_image(tmp_path / "tmpl" / r["path"]).astype(int), axis=0)).mean()
            for r in rows]
    assert np.median(diff) > 3


def test_the_fast_median_is_numpys_median_bit_for_bit():
    """_median_rows (a sort along contiguous memory) gives np.median's numbers, ties and odd or
    even counts alike: the running template must not depend on which one computes it."""
    rng = np.random.RandomState(3)
    for count in range(1, 34):
        block = np.round(rng.randn(count, 200), 1)   # rounded: many ties
        assert np.array_equal(M._median_rows(block), np.median(block, axis=0)), count
