"""Stage 1 end to end on real records: pixels equal to the literal thesis implementation,
resume after SIGKILL, options."""
import csv
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

import spec_stage1
from conftest import REPO, run_script

RECORDS = ["100", "207", "232"]  # 100: no class beats; 207: three classes; 232: RBBB


def read_manifest(folder):
    with open(folder / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def png_files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


@pytest.fixture(scope="module")
def clean_run(mitdb, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1") / "scalogram"
    run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", *RECORDS, "--out", out, "--workers", "2")
    return out


def test_outputs_equal_spec_pixel_by_pixel(mitdb, clean_run, tmp_path):
    expected = []
    for rec in RECORDS:
        expected += [(rel, rec, s, sym) for rel, s, sym in spec_stage1.process_record(str(mitdb), rec, str(tmp_path))]
    assert len(expected) > 1500
    assert png_files(clean_run) == sorted(e[0] for e in expected)
    rows = read_manifest(clean_run)
    assert [(r["path"], r["record"], int(r["sample"]), r["symbol"]) for r in rows] == expected
    assert {r["class"] for r in rows} == {"1", "2", "3"}
    for rel, *_ in expected:
        ours = cv2.imread(str(clean_run / rel), cv2.IMREAD_UNCHANGED)
        ref = cv2.imread(str(tmp_path / rel), cv2.IMREAD_UNCHANGED)
        assert ours.dtype == np.uint8 and ours.shape == (100, 100)
        assert np.array_equal(ours, ref), rel


def test_rerun_skips_finished_records(mitdb, clean_run):
    before = {p: p.stat().st_mtime_ns for p in clean_run.rglob("*.png")}
    proc = run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", *RECORDS, "--out", clean_run)
    assert "3 of 3 records already done" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in clean_run.rglob("*.png")} == before


def test_sigkill_then_resume_gives_the_clean_result(mitdb, clean_run, tmp_path):
    out = tmp_path / "scalogram"
    cmd = [sys.executable, str(REPO / "1_preprocessing.py"), "--data-dir", str(mitdb), "--records",
           *RECORDS, "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.rglob("*.png"))) < 600:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < len(list(out.rglob("*.png"))) < 2000, "the kill should land mid-run"
    run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", *RECORDS, "--out", out)
    assert png_files(out) == png_files(clean_run)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    for rel in png_files(out):
        assert (out / rel).read_bytes() == (clean_run / rel).read_bytes(), rel
    assert (out / "manifest.csv").read_text() == (clean_run / "manifest.csv").read_text()


def test_aami_classes_and_record_context(mitdb, tmp_path):
    out = tmp_path / "aami"
    run_script("1_preprocessing.py", "--data-dir", mitdb, "--classes", "aami", "--records", "232",
               "--cwt-context", "record", "--out", out)
    rows = read_manifest(out)
    by_class = {}
    for r in rows:
        by_class.setdefault(r["class"], set()).add(r["symbol"])
    assert by_class["N"] == {"R", "j"} and by_class["S"] == {"A"}, by_class  # 232: RBBB, nodal escape, APCs
    # the record context changes the low-frequency rows (row k is k+1 Hz), where a 200-sample
    # window's edges distort the transform, far more than the high-frequency rows
    beat = tmp_path / "beat"
    run_script("1_preprocessing.py", "--data-dir", mitdb, "--classes", "aami", "--records", "232", "--out", beat)
    assert [r["path"] for r in read_manifest(beat)] == [r["path"] for r in rows]
    low, high = [], []
    for r in rows[::50]:
        a = cv2.imread(str(out / r["path"]), cv2.IMREAD_UNCHANGED).astype(int)
        b = cv2.imread(str(beat / r["path"]), cv2.IMREAD_UNCHANGED).astype(int)
        assert a.shape == b.shape == (100, 100)
        low.append(np.abs(a[:10] - b[:10]).mean())
        high.append(np.abs(a[50:] - b[50:]).mean())
    assert np.mean(low) > 3 * np.mean(high) and np.mean(low) > 2


def test_changed_settings_need_force(mitdb, tmp_path):
    out = tmp_path / "s"
    run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", "232", "--out", out)
    proc = run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", "232", "--out", out,
                      "--cwt-context", "record", check=False)
    assert proc.returncode == 2 and "other preprocessing settings" in proc.stderr
    run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", "232", "--out", out,
               "--cwt-context", "record", "--force")
    assert len(read_manifest(out)) == len(png_files(out)) > 300


def test_fewer_records_leave_only_those_records(mitdb, tmp_path):
    out = tmp_path / "s"
    run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", "232", "207", "--out", out)
    assert {r["record"] for r in read_manifest(out)} == {"207", "232"}
    proc = run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", "232", "--out", out)
    assert "removing the outputs of 1 records not asked for this time: 207" in proc.stdout
    rows = read_manifest(out)
    assert {r["record"] for r in rows} == {"232"} and sorted(r["path"] for r in rows) == png_files(out)
