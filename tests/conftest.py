"""Shared fixtures. Test tiers (markers registered in pytest.ini) come from the fixtures a test
uses, and only from them (no test marks itself):

- `data`: it uses `mitdb` (the MIT-BIH records: MITDB_DIR, else data/mitdb here; skipped
  without them) or a slow fixture;
- `slow`: it uses a fixture of SLOW_FIXTURES, the training stages run end to end on a real
  subset (minutes), including the modules' own fixtures built on them;
- everything else is the unit tier: `make test-fast` (pytest -m "not data and not slow").

A fixture that reaches a slow one through `request.getfixturevalue` must be listed in
SLOW_FIXTURES (tests/test_layers.py checks that every test of such a fixture is marked).
"""
import contextlib
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
MITDB = Path(os.environ.get("MITDB_DIR") or REPO / "data" / "mitdb")
SLOW_FIXTURES = {"subset", "trained", "pruned", "quantized",   # here
                 "model", "trained_work", "rr_run", "relative_run"}  # test_device_record/_report/_rr_pipeline/_patient_relative


def pytest_collection_modifyitems(items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if "mitdb" in used or used & SLOW_FIXTURES:
            item.add_marker(pytest.mark.data)
        if used & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def mitdb():
    if not (MITDB / "RECORDS").is_file():
        pytest.skip(f"MIT-BIH not found at {MITDB} (set MITDB_DIR)")
    return MITDB


def run_script(script, *args, check=True, env=None):
    """Run a numbered script as a user would; return the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=REPO)
    return _checked(script, proc, check)


def script_module(script):
    """A numbered script as a module (its file name is no identifier), loaded once."""
    name = "stage_" + Path(script).stem
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / script)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def run_main(script, *args, check=True):
    """Call a numbered script's main(argv) in this process, as `run_script` runs it in a new one,
    for the unit tier's short runs (error paths, stage 2): no interpreter and torch import per
    call. Returns a CompletedProcess with the exit status and the captured stdout and stderr."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            script_module(script).main([str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    return _checked(script, subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue()), check)


def _checked(script, proc, check):
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


PER_CLASS = 120


@pytest.fixture(scope="session")
def subset(mitdb, tmp_path_factory, request):
    """Stage 1 on four records (one per class), then PER_CLASS beats of each class, spread evenly."""
    if "not slow" in (request.config.option.markexpr or ""):
        pytest.skip("needs the training stages: the slow tier, which this run leaves out")
    work = tmp_path_factory.mktemp("real")
    full = work / "full"
    run_script("1_preprocessing.py", "--data-dir", mitdb, "--records", "105", "109", "118", "119", "--out", full)
    scal = work / "data" / "scalogram"
    for cls_dir in sorted(p for p in full.iterdir() if p.is_dir() and not p.name.startswith(".")):
        pngs = sorted(cls_dir.glob("*.png"))
        (scal / cls_dir.name).mkdir(parents=True)
        for p in pngs[:: max(1, len(pngs) // PER_CLASS)][:PER_CLASS]:
            os.link(p, scal / cls_dir.name / p.name)
    run_script("2_train_test_valid_split.py", "--workdir", work)
    return work


TRAIN = ("--epochs", "3", "--batch-size", "16")


@pytest.fixture(scope="session")
def trained(subset):
    run_script("3_training.py", "--workdir", subset, *TRAIN)
    return subset


@pytest.fixture(scope="session")
def pruned(trained):
    run_script("4_testing.py", "--workdir", trained, "--errors-per-pair", "0")   # stage 5 takes its unpruned figures
    run_script("5_magnitude_channel_pruning.py", "--workdir", trained, "--epochs", "2", "--batch-size", "16")
    return trained


@pytest.fixture(scope="session")
def quantized(pruned):
    run_script("6_AIMET_quantization.py", "--workdir", pruned, "--epochs", "1", "--calibration-images", "128",
               "--batch-size", "16")
    run_script("7_AIMET_onnx.py", "--workdir", pruned)
    return pruned
