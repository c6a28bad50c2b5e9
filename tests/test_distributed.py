"""torchrun (DDP, gloo, 2 CPU processes) against one process on a small real subset: the same
weights for the same global batch, only rank 0 writes, a stopped 2-process run resumes; and the
plain single-process loop equals its literal definition (the thesis' training step)."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from ecg import dataset, training

DRIVER = str(REPO / "tests" / "ddp_fit.py")


def run(data, out, *args, procs=1):
    out.mkdir(parents=True, exist_ok=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"] \
        if procs > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launcher, DRIVER, str(data), str(out), *args], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out / "final.pth", weights_only=True)


@pytest.fixture(scope="module")
def train_dir(subset):
    return subset / "data" / "train_images"


def assert_same_weights(a, b, atol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=1e-4), (k, (a[k] - b[k]).abs().max())


def test_two_processes_equal_one_with_the_same_global_batch(train_dir, tmp_path):
    one = run(train_dir, tmp_path / "one", "--epochs", "2")
    two = run(train_dir, tmp_path / "two", "--epochs", "2", procs=2)
    assert_same_weights(one["final"], two["final"])
    from ddp_fit import small_cnn

    start = small_cnn().state_dict()
    assert any(not torch.equal(start[k], two["final"][k]) for k in start)  # it did train
    for h1, h2 in zip(one["history"], two["history"]):  # logged loss/accuracy are global figures
        assert h1["train_loss"] == pytest.approx(h2["train_loss"], rel=1e-4)
        assert h1["train_acc"] == pytest.approx(h2["train_acc"])
        assert h1["val_acc"] == pytest.approx(h2["val_acc"])
    # only rank 0 wrote files (log and checkpoint, every epoch)
    assert set((tmp_path / "two" / "writes_0.txt").read_text().split()) == {"log.csv", "ck.pth"}
    assert not (tmp_path / "two" / "writes_1.txt").exists()


def test_a_stopped_two_process_run_resumes_exactly(train_dir, tmp_path):
    full = run(train_dir, tmp_path / "full", "--epochs", "2", procs=2)
    run(train_dir, tmp_path / "part", "--epochs", "1", procs=2)  # stopped after its first epoch
    resumed = run(train_dir, tmp_path / "part", "--epochs", "2", "--resume", procs=2)
    assert_same_weights(full["final"], resumed["final"], atol=0)
    assert len(resumed["history"]) == 2


def test_the_single_process_loop_is_the_plain_training_step(train_dir, tmp_path):
    """fit() without torchrun = Adam on class-weighted cross-entropy over randperm(seed + epoch)
    batches, written out literally: the same weights bit for bit."""
    from ddp_fit import small_cnn

    data = dataset.ScalogramDataset(train_dir, progress=False)
    cfg = {"seed": 0, "batch_size": 32, "lr": 1e-3, "epochs": 1, "step_size": 0, "gamma": 1.0}
    training.setup(0)
    net = small_cnn()
    training.fit(net, data, data, cfg, torch.device("cpu"), tmp_path / "ck.pth", tmp_path / "log.csv")
    ref = small_cnn().to(memory_format=torch.channels_last)
    weight = (1.0 / data.counts().double().clamp(min=1)).float()
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    torch.manual_seed(1000)  # dropout seed of epoch 0 (none in this net)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    ref.train()
    for idx in torch.split(order, 32):
        x = data.images[idx].unsqueeze(1).float().div(255).contiguous(memory_format=torch.channels_last)
        loss = torch.nn.functional.cross_entropy(ref(x), data.targets[idx], weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in ref.state_dict().items():
        assert torch.equal(v, net.state_dict()[k]), k
