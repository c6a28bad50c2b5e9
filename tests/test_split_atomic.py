"""Stage 2 replaces train/val/test as one set. Killed (SIGKILL) at any rename, it leaves either
a whole set or missing folders, never an old split beside a new one; `split.check_set`, which
stages 3-5 call, refuses the incomplete set; a re-run gives exactly the clean result."""
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, run_main
from ecg import split
from ecg.errors import UserError
from helpers import fake_scalograms

SCRIPT = str(REPO / "2_train_test_valid_split.py")
# Loads stage 2's modules once, then for each WORKDIR:N forks a child that runs stage 2 on
# WORKDIR (--by record) and kills itself (SIGKILL) just before the N-th call of the watched os
# functions; prints each child's status: -9 killed, 0 finished before its N-th call.
KILLER = """
import os, runpy, signal, sys, traceback
import ecg.config, ecg.files, ecg.preprocess, ecg.split
watched, script, jobs = sys.argv[1].split(","), sys.argv[2], sys.argv[3:]
for job in jobs:
    work, n = job.rsplit(":", 1)
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        calls = [0]
        def killing(real):
            def call(*args, **kwargs):
                calls[0] += 1
                if calls[0] == int(n):
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)
            return call
        for name in watched:
            setattr(os, name, killing(getattr(os, name)))
        sys.argv = [script, "--workdir", work, "--by", "record"]
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            os._exit(e.code if isinstance(e.code, int) else 1)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
"""
SPLITS = ("train", "val", "test")


def folders(work):
    return {s: work / "data" / f"{s}_images" for s in SPLITS}


def contents(work):
    """{split: set of image paths} of the folders present."""
    return {s: {p.relative_to(d).as_posix() for p in d.rglob("*.png")} for s, d in folders(work).items() if d.is_dir()}


def stage2(work, by):
    run_main("2_train_test_valid_split.py", "--workdir", work, "--by", by)
    return contents(work)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """A work folder split at random (the old set), and the record split of the same images (new)."""
    work = tmp_path_factory.mktemp("split") / "work"
    fake_scalograms(work / "data" / "scalogram", records=("100", "101", "102", "103", "104", "105", "106"))
    new = stage2(work, "record")
    old = stage2(work, "random")
    assert old != new
    return work, old, new


def killed_runs(sets, folder, ns, watched="rename"):
    """{n: (status, work)}: a copy of the old work folder per n, the record split run on it and
    killed just before the n-th watched call (status -9), or finished first (status 0)."""
    works = {}
    for n in ns:
        works[n] = folder / f"w{n}"
        shutil.copytree(sets[0], works[n])
    proc = subprocess.run([sys.executable, "-c", KILLER, watched, SCRIPT, *[f"{w}:{n}" for n, w in works.items()]],
                          capture_output=True, text=True, cwd=REPO)
    statuses = [int(x) for x in proc.stdout.split()]
    assert proc.returncode == 0 and len(statuses) == len(works), proc.stderr
    assert set(statuses) <= {-9, 0}, proc.stderr
    return {n: (status, works[n]) for n, status in zip(works, statuses)}


@pytest.fixture(scope="module")
def swap_kills(sets, tmp_path_factory):
    """The swap is six renames: the three old folders aside, then the three new ones in."""
    return killed_runs(sets, tmp_path_factory.mktemp("kills"), range(1, 7))


def assert_one_set_or_refused(work, old, new):
    now = contents(work)
    whole = [s for s in (old, new) if all(now[k] == s[k] for k in now)]
    assert whole, f"old and new split folders side by side: {sorted(now)}"
    if len(now) == 3:
        split.check_set(folders(work))  # a whole set is accepted
    else:
        with pytest.raises(UserError, match="re-run 2_train_test_valid_split.py"):
            split.check_set(folders(work))


@pytest.mark.parametrize("n", range(1, 7))
def test_kill_in_the_swap_never_mixes_old_and_new(sets, swap_kills, n):
    _, old, new = sets
    status, work = swap_kills[n]
    assert status == -9, "the kill should land in the swap"
    assert len(contents(work)) == {1: 3, 2: 2, 3: 1, 4: 0, 5: 1, 6: 2}[n]  # folders in place
    assert_one_set_or_refused(work, old, new)
    if n == 5:  # the first new folder in, two missing: a re-run gives the clean result
        assert stage2(work, "record") == new
        assert not [p for p in (work / "data").iterdir() if p.name.endswith((".old", ".building"))]


def test_kill_at_every_file_operation_then_rerun(sets, tmp_path):
    _, old, new = sets
    runs = killed_runs(sets, tmp_path, range(1, 21), "rename,replace")
    killed = [n for n, (status, _) in runs.items() if status == -9]
    assert killed == list(range(1, len(killed) + 1)) and len(killed) > 8, runs  # stamps, six renames, csv, summary
    for n in killed:
        work = runs[n][1]
        assert_one_set_or_refused(work, old, new)
        assert stage2(work, "record") == new


def test_check_set_accepts_hand_made_folders_and_refuses_mixed_runs(tmp_path):
    dirs = {s: tmp_path / s for s in SPLITS}
    split.check_set(dirs)  # nothing there: the datasets report missing folders themselves
    for d in dirs.values():
        d.mkdir()
    split.check_set(dirs)  # no stamps: folders made by hand are fine
    for s, d in dirs.items():
        (d / split.STAMP).write_text("run-a\n")
    split.check_set(dirs)
    (dirs["test"] / split.STAMP).write_text("run-b\n")
    with pytest.raises(UserError, match="different runs"):
        split.check_set(dirs)
    shutil.rmtree(dirs["test"])
    with pytest.raises(UserError, match="test missing"):
        split.check_set(dirs)
