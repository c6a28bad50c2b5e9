"""Driver for tests/test_distributed.py: the shared training loop on a split folder with a small
BatchNorm- and dropout-free CNN (so one and several processes must give the same weights), run
plainly or under torchrun. Every process appends the files it wrote to writes_<rank>.txt."""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ecg import dataset, distributed, files, training  # noqa: E402


def small_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 5, stride=3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, stride=2),
                               torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    device = distributed.init("cpu") or torch.device("cpu")
    rank = distributed.rank()
    for name in ("write_text", "write_bytes", "save_with"):  # record who writes
        real = getattr(files, name)

        def logged(path, *a, _real=real, **k):
            with open(out / f"writes_{rank}.txt", "a") as f:
                f.write(f"{Path(path).name}\n")
            return _real(path, *a, **k)

        setattr(files, name, logged)
    training.setup(0, 1)
    data = dataset.ScalogramDataset(args.data, progress=False)
    cfg = {"seed": 0, "batch_size": 32, "lr": 1e-3, "epochs": args.epochs, "step_size": 1, "gamma": 0.5}
    net = small_cnn()
    history, best = training.fit(net, data, data, cfg, device, out / "ck.pth", out / "log.csv", resume=args.resume)
    if distributed.is_main():
        torch.save({"final": net.state_dict(), "history": history}, out / "final.pth")
    distributed.shutdown()


if __name__ == "__main__":
    main()
