"""EDF/EDF+ input (jetson/edf_input.py, infer_trt.py --edf) on files the tests write with pyedflib:
MIT-BIH 119 converted (samples equal to the WFDB path's within the EDF's quantisation, the same
beats and labels as --record in batch and stream mode, the report), the digital -> physical
mapping and units against the header, chunks read N samples at a time, and each bad input
refused with one error line naming the file, before the model is loaded."""
import csv
import os
import subprocess
import sys
import warnings

import numpy as np
import pyedflib
import pytest

from conftest import REPO
from test_jetson import JETSON, infer

from jetson import edf_input, signal_input
from jetson.common import DeviceError
from jetson.records import Source

SHIPPED = REPO / "models" / "aami"
DMIN, DMAX = -32768, 32767
SECONDS = 180
OP = {"before": 90, "after": 110, "fs": 360}   # what Source.open reads of an operator: the beat window


def write_edf(path, leads, record_s=1):
    """An EDF+C file of `leads`: (label, unit, fs, samples, L), each with physical range -L..L over the
    full 16-bit digital range, data records of `record_s` seconds."""
    w = pyedflib.EdfWriter(str(path), len(leads), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        with warnings.catch_warnings():   # "forcing a record duration might alter the rates": checked here
            warnings.filterwarnings("ignore", "Forcing a specific record_duration")
            w.setDatarecordDuration(record_s)
        w.setSignalHeaders([{"label": label, "dimension": unit, "sample_frequency": fs, "physical_min": -lim,
                             "physical_max": lim, "digital_min": DMIN, "digital_max": DMAX, "transducer": "",
                             "prefilter": ""} for label, unit, fs, _, lim in leads])
        w.writeSamples([np.ascontiguousarray(x, dtype=np.float64) for _, _, _, x, _ in leads])
    finally:
        w.close()
    return path


def step(lim):
    """One digital step in physical units: the EDF's quantisation of a signal written as above."""
    return 2.0 * lim / (DMAX - DMIN)


def header_signals(path):
    """(labels, per-signal [pmin, pmax, dmin, dmax], samples per record) as the header's ASCII says."""
    raw = open(path, "rb").read()
    ns = int(raw[252:256])
    field = lambda offset, width, i: raw[256 + ns * offset + i * width: 256 + ns * offset + (i + 1) * width]  # noqa
    labels = [field(0, 16, i).decode().strip() for i in range(ns)]
    ranges = [[float(field(o, 8, i)) for o in (104, 112, 120, 128)] for i in range(ns)]
    return labels, ranges, [int(field(216, 8, i)) for i in range(ns)]


def decoded(path, i):
    """Signal i of an EDF file by the format's definition: little-endian 16-bit digital values, data
    record after data record, mapped linearly so that dmin -> pmin and dmax -> pmax."""
    labels, ranges, spr = header_signals(path)
    raw = open(path, "rb").read()
    d = np.frombuffer(raw[256 * (len(labels) + 1):], dtype="<i2").reshape(-1, sum(spr))
    d = d[:, sum(spr[:i]):sum(spr[:i + 1])].ravel().astype(np.float64)
    pmin, pmax, dmin, dmax = ranges[i]
    return pmin + (d - dmin) * (pmax - pmin) / (dmax - dmin)


def ecg_like(seconds, fs=360, seed=0):
    """A spike every 0.8 s on a little noise: enough signal for the checks that look at it."""
    t = np.arange(int(seconds * fs)) / float(fs)
    return np.exp(-((t % 0.8) - 0.4) ** 2 / 2e-4) + 0.01 * np.random.RandomState(seed).randn(len(t))


@pytest.fixture(scope="module")
def rec119(mitdb, tmp_path_factory):
    """The first 3 minutes of record 119 (PVCs in bigeminy), both leads, as a WFDB record (r119) and as
    EDF+ (r119.edf: MLII in uV, V1 in mV); the physical range +-L of each EDF signal as `lims`."""
    import wfdb

    d = tmp_path_factory.mktemp("edf")
    r = wfdb.rdrecord(str(mitdb / "119"), sampto=SECONDS * 360)
    assert r.sig_name == ["MLII", "V1"] and r.units == ["mV", "mV"]
    wfdb.wrsamp("r119", fs=360, units=r.units, sig_name=r.sig_name, p_signal=r.p_signal, fmt=["16", "16"],
                adc_gain=r.adc_gain, baseline=r.baseline, write_dir=str(d))
    lims = {"MLII": 8192.0, "V1": 8.192}   # uV and mV: well beyond the record's +-5 mV
    write_edf(d / "r119.edf", [("MLII", "uV", 360, r.p_signal[:, 0] * 1000.0, lims["MLII"]),
                               ("V1", "mV", 360, r.p_signal[:, 1], lims["V1"])])
    return d, lims


def test_edf_samples_equal_the_records_within_its_quantisation(rec119):
    d, lims = rec119
    edf, rec = str(d / "r119.edf"), str(d / "r119")
    labels, _, _ = header_signals(edf)
    assert labels == ["MLII", "V1", "EDF Annotations"]       # pyedflib's EDF+ annotation channel, not a lead
    for name, index, to_mv in (("MLII", 0, 1e-3), ("V1", 1, 1.0)):
        want = signal_input.read_wfdb(rec, name)
        for lead in (name, str(index), index):
            got = edf_input.read_edf(edf, lead)
            assert got.fs == 360.0 and got.name == "{} (lead {})".format(edf, name) and got.ann_samples is None
            assert len(got.x) == len(want.x) == SECONDS * 360
            # one digital step of the EDF in mV bounds the error (a writer rounds or truncates to it)
            assert np.abs(got.x - want.x).max() <= step(lims[name]) * to_mv
    assert np.array_equal(edf_input.read_edf(edf).x, edf_input.read_edf(edf, "MLII").x)   # default: the first


def test_digital_to_physical_and_units_follow_the_header(tmp_path, capsys):
    """Each signal's samples = pmin + (d - dmin) * (pmax - pmin) / (dmax - dmin) of its raw digital
    values, times the unit's factor to mV; the rate is samples per data record / record duration."""
    x = ecg_like(6)   # mV
    units = [("uV", 1e3, 8000.0), ("mV", 1.0, 8.0), ("V", 1e-3, 0.008), ("nV", 1e6, 8000000), ("mmHg", 1.0, 8.0)]
    path = str(write_edf(tmp_path / "units.edf", [(u, u, 360, x * per_mv, lim) for u, per_mv, lim in units],
                         record_s=2))
    labels, _, spr = header_signals(path)
    assert spr[:5] == [720] * 5 and labels[5] == "EDF Annotations"   # 2 s data records
    for i, (unit, per_mv, lim) in enumerate(units):
        sig = edf_input.read_edf(path, unit)
        assert sig.fs == 360.0
        # to float rounding (a millionth of a step); a non-voltage unit is used as it is
        assert np.abs(sig.x - decoded(path, i) / per_mv).max() <= 1e-6 * step(lim) / per_mv
        assert np.abs(sig.x - x).max() <= step(lim) / per_mv    # and the signal written, to one step
        warned = capsys.readouterr().err
        assert ("physical dimension 'mmHg' is not a voltage" in warned) == (unit == "mmHg")


def test_chunks_are_read_from_the_file_n_samples_at_a_time(rec119, monkeypatch):
    d, _ = rec119
    edf = str(d / "r119.edf")
    whole = edf_input.read_edf(edf, "V1").x
    asked = []
    read = pyedflib.EdfReader.readSignal
    monkeypatch.setattr(pyedflib.EdfReader, "readSignal",
                        lambda self, chn, start=0, n=None, **kw: asked.append((chn, start, n)) or read(
                            self, chn, start, n, **kw))
    chunks = [x for x, _ in edf_input.edf_chunks(edf, "V1", 1000)]
    assert np.array_equal(np.concatenate(chunks), whole)
    assert [len(c) for c in chunks] == [1000] * (len(whole) // 1000) + [len(whole) % 1000]
    assert asked == [(1, s, min(1000, len(whole) - s)) for s in range(0, len(whole), 1000)]
    # a stream through records.Source: the same, 0.25 s at a time, and nothing read before it is asked for
    asked[:] = []
    sig, gen = Source(edf=edf, stream=True, chunk_s=0.25).open(OP)
    assert sig.x is None and sig.fs == 360.0 and asked == []
    first = next(gen)[0]
    assert asked == [(0, 0, 90)] and len(first) == 90
    assert np.array_equal(np.concatenate([first] + [x for x, _ in gen]), edf_input.read_edf(edf).x)
    # every check is made when the generator is asked for, not at its first chunk
    with pytest.raises(DeviceError, match="no lead 'V5'"):
        edf_input.edf_chunks(edf, "V5", 1000)


def ort(*args):
    return ["--backend", "onnxruntime", "--onnx", SHIPPED / "ecg_model_float.onnx",
            "--operator", SHIPPED / "cwt_operator.npz", *args]


def beats(path):
    with open(path, newline="") as f:
        return [(r["sample"], r["predicted"]) for r in csv.DictReader(f)]


def test_edf_gives_the_records_beats_and_labels_in_batch_and_stream(rec119, tmp_path):
    d, _ = rec119
    runs = {"record": ("--record", d / "r119"), "edf": ("--edf", d / "r119.edf"),
            "record_running": ("--record", d / "r119", "--normalise", "running"),
            "edf_stream": ("--edf", d / "r119.edf", "--stream")}
    for name, args in runs.items():
        run = infer(*ort(*args, "--out", tmp_path / (name + ".csv")))
        assert run.returncode == 0, run.stderr
    batch = beats(tmp_path / "record.csv")
    assert len(batch) > 150 and {"N", "V"} <= {p for _, p in batch}   # 119: N and V in bigeminy
    assert beats(tmp_path / "edf.csv") == batch
    assert beats(tmp_path / "edf_stream.csv") == beats(tmp_path / "record_running.csv")


def test_edf_stream_gets_plots_and_a_report(rec119, tmp_path):
    pytest.importorskip("matplotlib")
    import cv2

    d, _ = rec119
    rep, out = tmp_path / "rep", tmp_path / "s.csv"
    run = infer(*ort("--edf", d / "r119.edf", "--lead", "V1", "--stream", "--out", out, "--plot", "--report", rep))
    assert run.returncode == 0, run.stderr
    strips = sorted((tmp_path / "s_strips").glob("strip_*.png"))
    assert len(strips) == 3 and all(cv2.imread(str(p)) is not None for p in strips)   # one page a minute
    page = (rep / "index.html").read_text(encoding="utf-8")
    assert "{} (lead V1)".format(d / "r119.edf") in page and 'data-key="detection' not in page


@pytest.fixture(scope="module")
def small_edf(tmp_path_factory):
    """10 s of two synthetic leads, MLII and V1, at 360 Hz."""
    d = tmp_path_factory.mktemp("small")
    x = ecg_like(10)
    return write_edf(d / "two.edf", [("MLII", "mV", 360, x, 8.0), ("V1", "mV", 360, -x, 8.0)])


def bad_edf(tmp_path, small_edf, case):
    """(the EDF path, extra arguments, what the error says after the path) for one bad input."""
    raw = small_edf.read_bytes()
    path = tmp_path / "bad.edf"
    if case == "missing":
        return tmp_path / "nope.edf", [], ": no such file"
    if case == "not_edf":
        path.write_text("sample,mV\n0,0.1\n")
        return path, [], ": not an EDF file"
    if case == "truncated":
        path.write_bytes(raw[:-1000])
        return path, [], ": truncated: the header gives 10 data records, {} bytes in all, the file has {} bytes".format(
            len(raw), len(raw) - 1000)
    if case == "corrupt":   # a start date edflib refuses (the fixed fields are fine)
        path.write_bytes(raw[:168] + b"31.02.xx" + raw[176:])
        return path, [], ": not a readable EDF/EDF+ file (the file is not EDF(+) or BDF(+) compliant"
    if case == "discontinuous":
        assert raw[192:197] == b"EDF+C"
        path.write_bytes(raw[:192] + b"EDF+D" + raw[197:])
        return path, [], ": an EDF+D file (discontinuous"
    if case == "no_lead":
        return small_edf, ["--lead", "II"], ": no lead 'II' (the file has 0 MLII, 1 V1)"
    if case == "index":
        return small_edf, ["--lead", "2"], ": lead index 2 is out of range: the file has 2 signals (0 MLII, 1 V1)"
    if case == "low_rate":   # 50 Hz as 100 samples per 2-s data record (not 100 Hz)
        write_edf(path, [("MLII", "mV", 50, ecg_like(10, 50), 8.0)], record_s=2)
        return path, [], " (lead MLII): sampling rate 50 Hz is below 100 Hz"
    if case == "score":
        return small_edf, ["--score"], ": --score needs a WFDB record's .atr annotations"
    if case == "annotations":
        return small_edf, ["--beats", "annotations"], ": --beats annotations needs a WFDB record's .atr"
    if case == "fs":
        return small_edf, ["--fs", "360"], ": --fs and --column are for CSV input"
    raise ValueError(case)


@pytest.mark.parametrize("case", ["missing", "not_edf", "truncated", "corrupt", "discontinuous", "no_lead", "index",
                                  "low_rate", "score", "annotations", "fs"])
def test_bad_edf_input_is_one_error_line_before_any_work(small_edf, tmp_path, case):
    """Exit status 2, one 'error: FILE...' line, nothing written, and found before the model is
    loaded (the ONNX named here does not exist: it would be the error otherwise)."""
    path, extra, says = bad_edf(tmp_path, small_edf, case)
    out = tmp_path / "out.csv"
    run = infer("--backend", "onnxruntime", "--onnx", tmp_path / "no_model.onnx", "--operator",
                SHIPPED / "cwt_operator.npz", "--edf", path, *extra, "--out", out)
    assert run.returncode == 2
    assert len(run.stderr.splitlines()) == 1 and run.stderr.startswith("error: {}{}".format(path, says)), run.stderr
    assert run.stdout == "" and not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_lead_with_a_csv_stays_refused(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("\n".join("{:.4f}".format(v) for v in ecg_like(10)) + "\n")
    run = infer(*ort("--csv", src, "--fs", "360", "--lead", "1", "--out", tmp_path / "o.csv"))
    assert run.returncode == 2 and run.stderr.splitlines() == [
        "error: --lead is for WFDB records; a CSV's lead is chosen with --column"]


def test_without_pyedflib_an_edf_is_one_clear_error(small_edf, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['pyedflib'] = None\n")
    run = subprocess.run([sys.executable, str(JETSON / "infer_trt.py"), *map(str, ort(
        "--edf", small_edf, "--out", tmp_path / "o.csv"))], capture_output=True, text=True, cwd=JETSON,
        env=dict(os.environ, PYTHONPATH=str(shim)))
    assert run.returncode == 2 and run.stderr.splitlines() == [
        "error: EDF input needs the pyedflib package (pip3 install pyedflib; on Python 3.6, "
        "pip3 install 'pyedflib<=0.1.32')"]
