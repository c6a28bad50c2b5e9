"""Stage 3: dataset values equal the thesis' PIL path; the model and its file format; bad input."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from conftest import run_main
from ecg import dataset, model
from ecg.errors import UserError
from helpers import fake_scalograms


def test_values_equal_pil_grayscale_to_tensor(tmp_path):
    root = fake_scalograms(tmp_path / "d", {"0": 5, "1": 5})
    ds = dataset.ScalogramDataset(root, progress=False)
    tf = transforms.Compose([transforms.Resize((100, 100)), transforms.ToTensor()])
    for i in range(len(ds)):
        x, y = ds[i]
        ref = tf(Image.open(ds.paths[i]).convert("L"))
        assert torch.equal(x, ref)
        assert y.item() == int(ds.paths[i].parent.name)  # thesis: label = int(folder name)
    xb, yb = next(dataset.batches(ds, 4))
    assert xb.shape == (4, 1, 100, 100) and torch.equal(xb[1], ds[1][0]) and torch.equal(yb, ds.targets[:4])


def test_numeric_classes_sort_as_numbers(tmp_path):
    root = fake_scalograms(tmp_path / "d", {"2": 1, "10": 1, "1": 1})
    assert dataset.ScalogramDataset(root, progress=False).classes == ["1", "2", "10"]


@pytest.mark.parametrize("problem", ["empty", "no_images", "corrupt", "size"])
def test_bad_split_folders(tmp_path, problem):
    root = tmp_path / "d"
    if problem == "empty":
        root.mkdir()
        match = "empty split folder"
    else:
        fake_scalograms(root, {"0": 3, "1": 3})
        if problem == "no_images":
            (root / "2").mkdir()
            match = "has no images"
        elif problem == "corrupt":
            (root / "1" / "100_1_0.png").write_bytes(b"\x89PNG garbage")
            match = "100_1_0.png: not a readable image"
        else:
            from ecg.scalogram import encode_png

            (root / "1" / "100_1_0.png").write_bytes(encode_png(np.zeros((50, 100), np.uint8)))
            match = "100_1_0.png: image is 100x50, expected 100x100"
    with pytest.raises(UserError, match=match):
        dataset.ScalogramDataset(root, progress=False)
    proc = run_main("3_training.py", "--workdir", tmp_path, "--set", f'paths.train_dir="{root}"', check=False)
    assert proc.returncode == 2 and match.split(":")[-1].strip() in proc.stderr


def test_model_is_the_thesis_model():
    net = model.build_model(4)
    assert net.features[0][0].in_channels == 1 and net.features[0][0].out_channels == 32
    assert net.classifier[1].out_features == 4
    assert net(torch.zeros(2, 1, 100, 100)).shape == (2, 4)


def test_model_file_round_trip_weights_only(tmp_path):
    net = model.build_model(3).eval()
    model.save(tmp_path / "m.pth", net.state_dict(), ["a", "b", "c"])
    blob = torch.load(tmp_path / "m.pth", weights_only=True)
    assert blob["classes"] == ["a", "b", "c"]
    again, meta = model.load(tmp_path / "m.pth")
    x = torch.rand(2, 1, 100, 100)
    with torch.no_grad():
        assert torch.equal(net(x), again.eval()(x))


class Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_foreign_model_file_is_refused_not_unpickled(tmp_path):
    target = tmp_path / "pwned"
    torch.save({"x": Evil(str(target))}, tmp_path / "evil.pth")
    fake_scalograms(tmp_path / "data" / "test_images", {"0": 2, "1": 2})
    proc = run_main("4_testing.py", "--workdir", tmp_path, "--model", tmp_path / "evil.pth", check=False)
    assert proc.returncode == 2 and "evil.pth: not a model file of this pipeline" in proc.stderr
    assert not target.exists()
    torch.save({"state_dict": {}}, tmp_path / "plain.pth")
    proc = run_main("4_testing.py", "--workdir", tmp_path, "--model", tmp_path / "plain.pth", check=False)
    assert proc.returncode == 2 and "no 'ecg-scalogram-model/1' marker" in proc.stderr


def test_model_classes_must_match_data(tmp_path):
    model.save(tmp_path / "m.pth", model.build_model(3).state_dict(), ["0", "1", "2"])
    fake_scalograms(tmp_path / "data" / "test_images", {"0": 2, "1": 2})
    proc = run_main("4_testing.py", "--workdir", tmp_path, "--model", tmp_path / "m.pth", check=False)
    assert proc.returncode == 2 and "differ from the model's" in proc.stderr


def test_the_scripts_take_the_model_and_dataset_through_the_layout_modules():
    """The numbered scripts open ecg/model.py and ecg/dataset.py only through Class_Model.py and
    Class_Dataset.py (the thesis layout), and those are the same objects, not copies."""
    import ast

    import Class_Dataset
    import Class_Model
    from conftest import REPO
    from ecg import dataset as ecg_dataset
    from ecg import model as ecg_model

    for script in sorted(REPO.glob("[1-7]_*.py")):
        tree = ast.parse(script.read_text())
        from_ecg = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "ecg"
                    for a in n.names}
        assert not from_ecg & {"model", "dataset"}, script.name
        uses = {n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
        imported = {a.asname for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
                    if a.name in ("Class_Model", "Class_Dataset")}
        assert uses & {"model", "dataset"} <= imported, script.name
    assert Class_Model.load is ecg_model.load and Class_Model.build_model is ecg_model.build_model
    assert Class_Dataset.ScalogramDataset is ecg_dataset.ScalogramDataset
