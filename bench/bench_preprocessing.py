"""Stage-1 speed: the thesis algorithm (per-beat pywt.cwt + cv2.imwrite) vs ours, one core each.

    python bench/bench_preprocessing.py [--data-dir DIR] [--records 100 109 118 119 207 208]

Both run in this process on the same records, single-threaded, into fresh temp folders; the
outputs are compared pixel by pixel and the beats/s of each and the ratio are printed.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import spec_stage1  # noqa: E402  (the literal thesis stage 1 the tests use)
from ecg import config, preprocess  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("MITDB_DIR", str(REPO.parent / "shared" / "mitdb")))
    p.add_argument("--records", nargs="+", default=["100", "109", "118", "119", "207", "208"])
    p.add_argument("--batch", type=int, default=None, help="beats per CWT batch (default: config)")
    p.add_argument("--png-compression", type=int, help="zlib level of our PNGs (default: config)")
    args = p.parse_args()
    cfg = config.load(argparse.Namespace(config=[], workdir=".", set=[]))
    settings = preprocess.settings_of(cfg)
    args.batch = args.batch or cfg["preprocess"]["batch"]
    if args.png_compression is None:
        args.png_compression = cfg["preprocess"]["png_compression"]
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        ref_out, our_out = Path(tmp, "ref"), Path(tmp, "ours")
        os.sync()  # start each side with no pending writeback from the other
        t0, c0 = time.perf_counter(), time.process_time()
        ref = [w for r in args.records for w in spec_stage1.process_record(args.data_dir, r, str(ref_out))]
        t_ref, c_ref = time.perf_counter() - t0, time.process_time() - c0
        os.sync()
        t0, c0 = time.perf_counter(), time.process_time()
        n = preprocess.run(args.data_dir, args.records, our_out, settings, workers=1, batch=args.batch,
                           png_level=args.png_compression)
        t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
        assert n == len(ref), f"beat counts differ: ours {n}, reference {len(ref)}"
        differ = sum(not np.array_equal(cv2.imread(str(ref_out / rel), 0), cv2.imread(str(our_out / rel), 0))
                     for rel, _, _ in ref)
    print(f"records {' '.join(args.records)}: {n} beats, {differ} images differ "
          f"(our PNG compression level {args.png_compression})")
    print("                          beats/s: wall-clock   CPU time (user+sys of this process)")
    print(f"reference (per-beat pywt.cwt + cv2.imwrite): {n / t_ref:8.1f}   {n / c_ref:8.1f}")
    print(f"ours (one worker)                           : {n / t_ours:8.1f}   {n / c_ours:8.1f}")
    print(f"speed-up per core: {t_ref / t_ours:.1f}x wall-clock, {c_ref / c_ours:.1f}x CPU time")
    print("(wall-clock includes waiting for the disk to accept new files, which varies a lot on a"
          " shared VM disk; CPU time is the work done by the core)")
    if differ:
        sys.exit(1)


if __name__ == "__main__":
    main()
