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
