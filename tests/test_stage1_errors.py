"""Bad input to stage 1: one clear line naming the problem, exit status 2, nothing written."""
import shutil

import numpy as np
import pytest
import wfdb

from conftest import run_script


def copy_record(mitdb, dest, rec="232", suffixes=(".hea", ".dat", ".atr")):
    dest.mkdir(exist_ok=True)
    for s in suffixes:
        shutil.copy(mitdb / f"{rec}{s}", dest / f"{rec}{s}")
    return dest


def assert_refused(proc, *needles, out=None):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    if out is not None:
        assert not out.exists() or not any(out.rglob("*.png"))


def stage1(data, out, *args):
    return run_script("1_preprocessing.py", "--data-dir", data, "--out", out, *args, check=False)


def test_unknown_record(mitdb, tmp_path):
    out = tmp_path / "o"
    assert_refused(stage1(mitdb, out, "--records", "999"), "record 999", "no such record", out=out)


@pytest.mark.parametrize("missing", [".atr", ".dat", ".hea"])
def test_missing_file(mitdb, tmp_path, missing):
    data = copy_record(mitdb, tmp_path / "db", suffixes=[s for s in (".hea", ".dat", ".atr") if s != missing])
    out = tmp_path / "o"
    proc = stage1(data, out, "--records", "232")
    if missing == ".hea":
        assert_refused(proc, "record 232", out=out)
    else:
        assert_refused(proc, f"232{missing}", "missing", out=out)


def test_truncated_dat(mitdb, tmp_path):
    data = copy_record(mitdb, tmp_path / "db")
    dat = data / "232.dat"
    dat.write_bytes(dat.read_bytes()[:100000])
    out = tmp_path / "o"
    assert_refused(stage1(data, out, "--records", "232"), "232.dat", "truncated", out=out)


def test_checksum_mismatch(mitdb, tmp_path):
    data = copy_record(mitdb, tmp_path / "db")
    lines = [l for l in (mitdb / "SHA256SUMS.txt").read_text().splitlines() if " 232." in l]
    (data / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")
    raw = bytearray((data / "232.atr").read_bytes())
    raw[100] ^= 0xFF
    (data / "232.atr").write_bytes(bytes(raw))
    out = tmp_path / "o"
    assert_refused(stage1(data, out, "--records", "232"), "232.atr", "checksum mismatch", out=out)


def test_other_sampling_rate_refused_then_resampled(tmp_path):
    data = tmp_path / "db"
    data.mkdir()
    fs = 250
    n = fs * 60
    t = np.arange(n) / fs
    beats = np.arange(fs, n - fs, int(0.8 * fs))
    sig = 0.05 * np.sin(2 * np.pi * 0.3 * t)
    for b in beats:
        sig += np.exp(-0.5 * ((np.arange(n) - b) / 3.0) ** 2)
    wfdb.wrsamp("rec250", fs=fs, units=["mV"], sig_name=["MLII"], p_signal=sig[:, None], fmt=["16"],
                write_dir=str(data))
    wfdb.wrann("rec250", "atr", beats, symbol=["N"] * len(beats), write_dir=str(data))
    out = tmp_path / "o"
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[schemes.thesis.classes]]\nname = "0"\nlabel = "Normal"\nsymbols = ["N"]\nrecords = "all"\n')
    assert_refused(stage1(data, out, "--records", "rec250"), "rec250.hea", "250 Hz", "--resample", out=out)
    ok = run_script("1_preprocessing.py", "--config", cfg, "--data-dir", data, "--out", out,
                    "--records", "rec250", "--resample")
    assert f"{len(beats)} scalograms from 1 records" in ok.stdout
    assert len(list(out.rglob("*.png"))) == len(beats)
    import csv
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    samples = np.array([int(r["sample"]) for r in rows])
    assert np.all(np.abs(samples - beats * 360 / 250) <= 2)  # peaks found at the 360 Hz positions


def test_empty_record_list(mitdb, tmp_path):
    cfg = tmp_path / "empty.toml"
    cfg.write_text("[schemes.thesis]\nrecords = []\n")
    out = tmp_path / "o"
    proc = run_script("1_preprocessing.py", "--config", cfg, "--data-dir", mitdb, "--out", out, check=False)
    assert_refused(proc, "record list is empty", out=out)


def test_unwritable_output_folder(mitdb, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "scalogram"
    assert_refused(stage1(mitdb, out, "--records", "232"), str(out), "not writable")


def test_offline_download_error_says_how_to_point_at_a_copy(tmp_path, monkeypatch):
    import argparse

    from ecg import config, records
    from ecg.errors import UserError

    def fail(*a, **k):
        raise ConnectionError("network is unreachable")

    monkeypatch.delenv("MITDB_DIR", raising=False)
    monkeypatch.setattr(wfdb, "dl_database", fail)
    cfg = config.load(argparse.Namespace(config=[], workdir=str(tmp_path), set=[]))
    with pytest.raises(UserError, match="--data-dir DIR or MITDB_DIR"):
        records.data_dir(cfg)


@pytest.mark.parametrize("flag", ["preprocess.template_channel", "preprocess.rr_features"])
def test_a_record_with_one_beat_and_per_beat_features_is_refused(tmp_path, flag):
    """RR features and the running template need at least two beats: one error line naming the
    record, not a traceback from a worker."""
    data = tmp_path / "db"
    data.mkdir()
    n = 360 * 10
    sig = 0.02 * np.sin(np.arange(n) / 50.0) + np.exp(-0.5 * ((np.arange(n) - 1800) / 4.0) ** 2)
    wfdb.wrsamp("one", fs=360, units=["mV"], sig_name=["MLII"], p_signal=sig[:, None], fmt=["16"],
                write_dir=str(data))
    wfdb.wrann("one", "atr", np.array([1800]), symbol=["N"], write_dir=str(data))
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[schemes.thesis.classes]]\nname = "0"\nlabel = "Normal"\nsymbols = ["N"]\nrecords = "all"\n')
    out = tmp_path / "o"
    proc = run_script("1_preprocessing.py", "--config", cfg, "--data-dir", data, "--out", out, "--records", "one",
                      "--set", f"{flag}=true", check=False)
    # the progress bar had started (the record is read in a worker): the error is one line after it
    errors = [x for x in proc.stderr.strip().splitlines() if not x.startswith("scalograms:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and errors[0].startswith("error: record one: fewer than two"), proc.stderr
    assert not any(out.rglob("*.png"))
