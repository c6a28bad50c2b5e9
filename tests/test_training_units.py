"""The shared training loop's resume rules, and settings / device validation."""
import argparse

import pytest
import torch

from ecg import config, dataset, training
from ecg.errors import UserError
from helpers import fake_scalograms

CFG = {"seed": 0, "batch_size": 16, "lr": 1e-3, "epochs": 1, "step_size": 0, "gamma": 1.0}


def tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 2))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = fake_scalograms(tmp_path_factory.mktemp("d"), {"0": 24, "1": 16})
    return dataset.ScalogramDataset(root, progress=False)


def fit(data, tmp_path, epochs, resume=True, **kw):
    return training.fit(tiny_net(), data, data, CFG, torch.device("cpu"), tmp_path / "ck.pth", tmp_path / "log.csv",
                        resume=resume, epochs=epochs, **kw)


def test_resume_continues_and_equals_an_uninterrupted_run(data, tmp_path, capsys):
    fit(data, tmp_path, 1)
    history, best = fit(data, tmp_path, 2)
    assert "resuming after epoch 1" in capsys.readouterr().out and len(history) == 2
    (tmp_path / "ref").mkdir()
    ref_history, ref_best = fit(data, tmp_path / "ref", 2, resume=False)
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in ref_history]
    assert all(torch.equal(best["state_dict"][k], ref_best["state_dict"][k]) for k in best["state_dict"])


def test_stale_checkpoint_is_not_resumed(data, tmp_path, capsys):
    fit(data, tmp_path, 1)
    history, _ = fit(data, tmp_path, 1, lr=1e-2)  # another lr: the checkpoint is stale
    out = capsys.readouterr().out
    assert "not resumed" in out and "lr" in out and len(history) == 1 and history[0]["lr"] == 1e-2


def test_zero_epochs_returns_the_model_as_given(data, tmp_path):
    net = tiny_net()
    history, best = training.fit(net, data, data, CFG, torch.device("cpu"), tmp_path / "c.pth", tmp_path / "l.csv",
                                 epochs=0)
    assert history == [] and all(torch.equal(best["state_dict"][k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_bn_keeps_the_running_statistics_and_trains_the_rest(data, tmp_path, freeze):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, stride=4), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = {**CFG, "freeze_bn": freeze, "bn_recalibrate_batches": 2}   # frozen: no re-estimation either
    training.fit(net, data, data, cfg, torch.device("cpu"), tmp_path / "c.pth", tmp_path / "l.csv")
    after = net.state_dict()
    stats = ("1.running_mean", "1.running_var", "1.num_batches_tracked")
    assert all(torch.equal(before[k], after[k]) for k in stats) == freeze
    assert not torch.equal(before["1.weight"], after["1.weight"]) and not torch.equal(before["0.weight"], after["0.weight"])


@pytest.mark.parametrize("item", ["train.epochs=3.0", "train.lr=fast", "prune.sweep=0.3", "train.nope=1"])
def test_bad_setting_is_refused(item):
    with pytest.raises(UserError, match=item.split("=")[0]):
        config.load(argparse.Namespace(config=[], workdir=".", set=[item]))


def test_int_setting_is_accepted_for_a_float():
    cfg = config.load(argparse.Namespace(config=[], workdir=".", set=["train.lr=1"]))
    assert cfg["train"]["lr"] == 1.0 and isinstance(cfg["train"]["lr"], float)


@pytest.mark.parametrize("name", ["gpu", "cuda:0"])
def test_unusable_device_is_refused(name):
    if name.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(UserError, match="train.device"):
        training.pick_device(name)
