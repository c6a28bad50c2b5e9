"""Stage 5: L1 channel pruning, honest size figures, exact save/load, and the script end to end."""
import json

import pytest
import torch
import torch_pruning as tp
from torch import nn

from conftest import run_main
from ecg import model, pruning
from ecg.errors import UserError


@pytest.fixture(scope="module")
def pruned_b0():
    """EfficientNet-B0 pruned at the thesis ratio (pruning it takes seconds: once per module), and
    the size figures of the unpruned model."""
    torch.manual_seed(0)
    net = model.build_model(4).eval()
    before = pruning.size_figures(net)
    return before, pruning.prune(net, 0.5, round_to=8).eval()


def test_pruned_counts_match_torch_pruning_and_fall(pruned_b0):
    before, net = pruned_b0
    after = pruning.size_figures(net)
    macs, params = tp.utils.count_ops_and_params(net, torch.zeros(1, 1, 100, 100))
    assert (after["macs"], after["params"]) == (macs, params)
    assert after["params"] == sum(p.numel() for p in net.parameters())
    assert after["macs"] < 0.3 * before["macs"] and after["params"] < 0.3 * before["params"]
    assert after["file_bytes"] < 0.3 * before["file_bytes"]
    assert net.classifier[1].out_features == 4
    assert net(torch.zeros(2, 1, 100, 100)).shape == (2, 4)


def test_importance_is_l1_not_l2():
    """Channel 0 has one large weight (large L2, small L1), channel 1 many medium ones (large L1)."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.ReLU(), nn.Conv2d(2, 2, 1, bias=False),
                        nn.Flatten(), nn.Linear(2 * 98 * 98, 3))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, 0, 0, 0] = 2.0          # L1 2.0, L2 2.0
        net[0].weight[1].fill_(0.5)               # L1 4.5, L2 1.5
        net[2].weight.fill_(1.0)
    kept = net[0].weight.clone()
    tp.pruner.BasePruner(net, torch.zeros(1, 1, 100, 100), importance=tp.importance.MagnitudeImportance(p=1),
                         pruning_ratio=0.5, ignored_layers=[net[4]]).step()
    assert net[0].out_channels == 1
    assert torch.equal(net[0].weight[0], kept[1])  # L1 keeps the many-medium channel
    net2 = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.ReLU(), nn.Conv2d(2, 2, 1, bias=False))
    net2[0].weight.data.copy_(kept)
    net2[2].weight.data.fill_(1.0)
    wrapped = nn.Sequential(net2, nn.Flatten(), nn.Linear(2 * 98 * 98, 3))
    pruning.prune(wrapped, 0.5)  # our entry point must agree
    assert torch.equal(net2[0].weight[0], kept[1])


def test_bad_ratio_and_no_convs():
    with pytest.raises(UserError, match="outside"):
        pruning.prune(model.build_model(4), 1.0)
    with pytest.raises(UserError, match="no conv layers"):
        pruning.prune(nn.Sequential(nn.Flatten(), nn.Linear(10000, 4)), 0.5)


def test_compact_file_round_trip_is_exact(pruned_b0, tmp_path):
    net = pruned_b0[1]
    model.save(tmp_path / "c.pth", net.state_dict(), list("0123"), shapes=model.layer_shapes(net))
    torch.load(tmp_path / "c.pth", weights_only=True)  # no pickled modules inside
    again, _ = model.load(tmp_path / "c.pth")
    x = torch.rand(3, 1, 100, 100)
    with torch.no_grad():
        assert torch.equal(net(x), again.eval()(x))


def test_pruning_script_on_real_subset(pruned):
    trained = pruned
    s = json.loads((trained / "reports" / "prune_summary.json").read_text())
    assert s["after"]["macs"] < 0.3 * s["before"]["macs"]
    assert s["after"]["file_bytes"] < s["before"]["file_bytes"] / 3
    assert s["after"]["accuracy"] > 0.7, s["after"]  # chance is 0.25
    assert len(s["fine_tuning"]) == 2
    for f in ("prune_summary.txt", "prune_structure_before.txt", "prune_structure_after.txt",
              "test_result_pruned.json", "test_result_pruned_confusion_matrix.png"):
        assert (trained / "reports" / f).is_file(), f
    pruned, meta = model.load(trained / "model_save" / "ecg_model_compact.pth")
    assert sum(p.numel() for p in pruned.parameters()) == s["after"]["params"]
    stage4 = json.loads((trained / "reports" / "test_result.json").read_text())
    assert s["before"]["scores_from"].endswith("(stage 4)")      # same model file and split: not predicted again
    assert (s["before"]["accuracy"], s["before"]["macro_f1"]) == (stage4["accuracy"], stage4["macro_f1"])
    used = json.loads((trained / "reports" / "settings" / "prune.json").read_text())["settings"]
    assert used["prune"]["epochs"] == 2 and used["prune"]["batch_size"] == 16   # the fixture's flags, recorded


@pytest.mark.parametrize("case", ["ratio", "missing", "foreign"])
def test_pruning_script_bad_input(tmp_path, case):
    args = {"ratio": ["--ratio", "1.5"], "missing": ["--model", tmp_path / "nope.pth"],
            "foreign": ["--model", tmp_path / "foreign.pth"]}[case]
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pth")
    proc = run_main("5_magnitude_channel_pruning.py", "--workdir", tmp_path, *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert {"ratio": "outside (0, 1)", "missing": "nope.pth: model file not found",
            "foreign": "foreign.pth: not a model file"}[case] in proc.stderr
