"""Memory and time of the Holter summary and the long-recording report log over a synthetic day.

    .venv/bin/python bench/bench_holter_day.py [--hours 24] [--fs 360] [--render]

A synthetic lead (noise plus a spike every 0.8-1.0 s) is fed in 5-second chunks to
jetson/long_log.LongBeatLog (as --stream --report feeds it) and its beats, with random classes,
to LongBeatLog.beat and jetson/holter.Holter.add, as the labeller does; the model is not run.
Printed: the Python heap peak while feeding (tracemalloc: the synthetic chunks themselves count
too), what the log keeps at the end (numpy bytes), the feeding time, and with --render the
time to draw the Holter section and the hourly overview pages.
"""
import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jetson import holter_report, long_log  # noqa: E402
from jetson.holter import Holter  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--fs", type=float, default=360.0)
    p.add_argument("--render", action="store_true")
    a = p.parse_args()
    fs, n = a.fs, int(a.hours * 3600 * a.fs)
    rng = np.random.default_rng(0)
    peaks = np.cumsum(rng.integers(int(0.8 * fs), int(1.0 * fs), int(n / (0.8 * fs)) + 1))
    peaks = peaks[peaks < n - fs]
    classes = ["F", "N", "S", "V"]
    pred = rng.choice(4, len(peaks), p=[0.01, 0.92, 0.02, 0.05])
    conf = rng.uniform(0.3, 1.0, len(peaks))
    log = long_log.LongBeatLog(fs)
    keep = log.wrap(lambda u8, rr: None)
    acc = Holter(fs, classes)
    img = np.zeros((1, 100, 100), np.uint8)
    chunk, done = int(5 * fs), 0
    tracemalloc.start()
    t0 = time.perf_counter()
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = rng.normal(0, 0.02, m)
        inside = peaks[(peaks >= start) & (peaks < start + m)] - start
        x[inside] += 1.0
        log.signal(x)
        while done < len(peaks) and peaks[done] + 1.5 * fs < start + m:
            keep(img, None)
            log.beat(peaks[done], pred[done], conf[done])
            acc.add(peaks[done], classes[pred[done]])
            done += 1
    while done < len(peaks):
        keep(img, None)
        log.beat(peaks[done], pred[done], conf[done])
        acc.add(peaks[done], classes[pred[done]])
        done += 1
    log.finish(None)
    summary = acc.summary(n / fs, "synthetic")
    feed_s = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    kept = sum(v.nbytes for v in vars(log).values() if isinstance(v, np.ndarray))
    kept += sum(g.a.nbytes for g in (log.sample, log.pred, log.conf, log.true, log.ref.codes, log.envelope.lo,
                                     log.envelope.hi))
    kept += sum(s.nbytes for _, s in log.x.snippets)
    print("{:.1f} h at {:g} Hz: {:,} samples, {:,} beats; fed in {:.1f} s".format(a.hours, fs, n, len(peaks), feed_s))
    print("heap peak while feeding {:.1f} MB; the log keeps {:.1f} MB (the signal as float64: {:.1f} MB)".format(
        peak / 1e6, kept / 1e6, n * 8 / 1e6))
    print("hourly rows {}, 5-minute rows {}".format(len(summary["trend_hourly"]), len(summary["trend_5min"])))
    if a.render:
        t0 = time.perf_counter()
        parts = holter_report.sections(log, fs, classes, summary, "synthetic")
        print("Holter section and {} overview pages drawn in {:.1f} s, {:.1f} MB of PNG".format(
            len(parts[1][1]), time.perf_counter() - t0, sum(len(v) for _, f in parts for v in f.values()) / 1e6))


if __name__ == "__main__":
    main()
