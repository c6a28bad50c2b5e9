"""Small synthetic inputs shared by the tests."""
from pathlib import Path

import numpy as np

from ecg.scalogram import encode_png


def fake_scalograms(root, per_class=None, records=("100", "101", "102", "103", "104", "105"), seed=0):
    """root/<class>/<record>_<class>_<i>.png with class-dependent patterns; returns the root."""
    per_class = per_class or {"0": 40, "1": 30, "2": 20, "3": 10}
    rng = np.random.default_rng(seed)
    root = Path(root)
    for c, n in per_class.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 256, (100, 100), dtype=np.uint8)
            rec = records[(i + int(c)) % len(records)]
            (root / c / f"{rec}_{c}_{i}.png").write_bytes(encode_png(img))
    return root
