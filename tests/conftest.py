import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
MITDB = Path(os.environ.get("MITDB_DIR", REPO.parent / "shared" / "mitdb"))


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
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


PER_CLASS = 120


@pytest.fixture(scope="session")
def subset(mitdb, tmp_path_factory):
    """Stage 1 on four records (one per class), then PER_CLASS beats of each class, spread evenly."""
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
    run_script("5_magnitude_channel_pruning.py", "--workdir", trained, "--epochs", "2", "--set", "train.batch_size=16")
    return trained


@pytest.fixture(scope="session")
def quantized(pruned):
    run_script("6_AIMET_quantization.py", "--workdir", pruned, "--epochs", "1", "--calibration-images", "128",
               "--set", "train.batch_size=16")
    run_script("7_AIMET_onnx.py", "--workdir", pruned)
    return pruned
