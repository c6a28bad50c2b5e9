"""Training speed: the thesis-style loop (PIL decode + Resize + ToTensor in a DataLoader every
epoch, contiguous NCHW) vs ours (training.train_one_epoch: images decoded once into memory,
channels_last), same model, same images, same number of steps, in one process.

    python bench/bench_training.py [--data data/train_images] [--images 1280] [--batch-size 64]
"""
import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402

from ecg import dataset, model, training  # noqa: E402


class ThesisDataset(torch.utils.data.Dataset):
    """What the thesis' Class_Dataset does: open each PNG every time it is asked for."""

    def __init__(self, paths, targets):
        self.paths, self.targets = paths, targets
        self.tf = transforms.Compose([transforms.Resize((100, 100)), transforms.ToTensor()])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.tf(Image.open(self.paths[i]).convert("L")), self.targets[i]


def thesis_epoch(net, criterion, optimizer, loader, device):
    """The thesis' loop: NCHW batches straight from the DataLoader; the running loss and accuracy
    are kept as the thesis logs them (their .item() syncs are part of its cost, as in ours)."""
    net.train()
    total, correct = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = net(x)
        loss = criterion(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        correct += (out.argmax(1) == y).sum().item()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO / "data" / "train_images"))
    p.add_argument("--images", type=int, default=1280, help="images per timed epoch")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the thesis-style loop")
    args = p.parse_args()
    training.setup(0)
    device = training.pick_device()
    t0 = time.perf_counter()
    data = dataset.ScalogramDataset(args.data)
    decode = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    subset = torch.randperm(len(data), generator=g)[:args.images]
    data.paths = [data.paths[i] for i in subset]
    data.images, data.targets = data.images[subset], data.targets[subset]
    n = len(data)

    results = {}
    for name in ("thesis-style", "ours"):
        torch.manual_seed(0)
        ours = name == "ours"
        net = model.build_model(len(data.classes)).to(device)
        if ours:  # what 3_training.py does (training.fit)
            net = net.to(memory_format=torch.channels_last)
        criterion = torch.nn.CrossEntropyLoss()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        warm = data.images[:args.batch_size].unsqueeze(1).float().div(255)
        net.train()
        for _ in range(2):  # first steps allocate; time the steady state for both
            loss = criterion(net(training.to_device(warm, device) if ours else warm.to(device)),
                             data.targets[:args.batch_size].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        t0 = time.perf_counter()
        if ours:  # the real training loop of 3_training.py, 5_... and 6_...
            training.train_one_epoch(net, criterion, optimizer, data, device, args.batch_size,
                                     torch.Generator().manual_seed(0), desc="ours")
        else:
            loader = torch.utils.data.DataLoader(ThesisDataset(data.paths, data.targets.tolist()),
                                                 batch_size=args.batch_size, shuffle=True, num_workers=args.workers)
            thesis_epoch(net, criterion, optimizer, loader, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        results[name] = n / (time.perf_counter() - t0)
        print(f"{name:13s}: {results[name]:8.1f} images/s (one epoch of {n} images, batch {args.batch_size}, "
              f"{device}, {torch.get_num_threads()} threads)")
    print(f"speed-up: {results['ours'] / results['thesis-style']:.2f}x")
    print(f"(ours decodes the split once, before the first epoch: {decode:.1f} s for "
          f"all {args.data} images, not counted above)")


if __name__ == "__main__":
    main()
