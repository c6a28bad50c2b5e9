"""Stages 1-4 on a small real subset: the model learns far above chance; resume is exact."""
import json

import torch

from conftest import run_script


def test_training_beats_chance_by_far(trained):
    assert (trained / "model_save" / "ecg_model.pth").is_file()
    assert (trained / "reports" / "training_curves.png").stat().st_size > 10000
    log = (trained / "reports" / "train_log.csv").read_text().splitlines()
    assert len(log) == 4 and log[0].startswith("epoch,lr,train_loss")
    run_script("4_testing.py", "--workdir", trained)
    result = json.loads((trained / "reports" / "test_result.json").read_text())
    assert result["classes"] == ["0", "1", "2", "3"]
    assert result["accuracy"] > 0.75, result["accuracy"]  # chance is 0.25
    assert result["macro_f1"] > 0.7
    assert (trained / "reports" / "confusion_matrix.png").is_file()
    assert "AAMI EC57" in (trained / "reports" / "test_result.txt").read_text()


def test_resume_gives_the_uninterrupted_weights(trained, tmp_path):
    args = ("--set", f'paths.train_dir="{trained / "data" / "train_images"}"',
            "--set", f'paths.val_dir="{trained / "data" / "val_images"}"', "--batch-size", "16")
    run_script("3_training.py", "--workdir", tmp_path, "--epochs", "2", *args)
    run_script("3_training.py", "--workdir", tmp_path, "--epochs", "3", "--resume", *args)
    resumed = torch.load(tmp_path / "model_save" / "ecg_model.ckpt.pth", weights_only=True)
    straight = torch.load(trained / "model_save" / "ecg_model.ckpt.pth", weights_only=True)
    assert resumed["epoch"] == straight["epoch"] == 3
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
